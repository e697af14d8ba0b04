"""Where the score store is: a SQLite file (a path) or a PostgreSQL database (a `postgresql://` URL).

`--db` and `store.db` are read here first as a URL and only then as a path, so `postgresql://…` never turns
into a SQLite file in a folder named `postgresql:` (as `Path("postgresql://h/db")` would make it). The URL names
the server and the database; the password comes from `PGPASSWORD` or `~/.pgpass` (libpq reads both), so a URL
carrying one is refused: it would show in the process list, the logs and the config kept with each session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stream.text import one_line

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A server store keeps the run's local files (clips, uploads) under this folder of the working directory.
SERVER_STORE_FOLDER = Path("runs")


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL database as a libpq URL without a password (`postgresql://user@host:port/dbname?…`)."""

    url: str

    def __post_init__(self) -> None:
        scheme = _scheme(self.url)
        if scheme not in POSTGRES_SCHEMES:
            raise ValueError(f"a PostgreSQL store URL starts with postgresql://, got {scheme or 'no scheme'}")
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(self.url)
        except ProgrammingError as error:  # libpq could not parse it (its message quotes the URL)
            reason = one_line(error).replace(self.url, redacted(self.url))
            raise ValueError(f"{redacted(self.url)!r} is not a valid postgresql:// URL: {reason}") from None
        if params.get("password"):
            raise ValueError(
                "a postgresql:// store URL must not carry a password (it would show in the process list and in "
                "logs): set PGPASSWORD or put it in ~/.pgpass"
            )

    @property
    def dbname(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(self.url)
        return str(params.get("dbname") or params.get("user") or "postgres")

    def __str__(self) -> str:
        return self.url


def redacted(url: str) -> str:
    """`url` with any password in it (`user:PASSWORD@`, `password=…`) replaced by `***`, for messages."""
    url = re.sub(r"(://[^/@?]*?):[^/@?]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url, flags=re.IGNORECASE)


# What `store.db` holds once read: a SQLite path or a PostgreSQL database.
StoreTarget = Path | PostgresUrl


def _scheme(value: str) -> str | None:
    match = _SCHEME.match(value)
    return match.group(1).lower() if match else None


def parse_store_target(value: str | Path | PostgresUrl) -> StoreTarget:
    """`value` as a store: a `postgresql://` (or `postgres://`) URL selects PostgreSQL, any other `scheme://` is
    refused, and everything else is a SQLite path. ValueError (one line) for a URL that cannot be used."""
    if isinstance(value, PostgresUrl | Path):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a store is a path or a postgresql:// URL, got {value!r}")
    scheme = _scheme(value)
    if scheme in POSTGRES_SCHEMES:
        return PostgresUrl(value)
    if scheme is not None:
        raise ValueError(
            f"unsupported store URL scheme {scheme}:// (use a path for SQLite or postgresql://user@host:port/dbname)"
        )
    if not value:
        raise ValueError("a store path must not be empty")
    return Path(value)


def local_path(target: StoreTarget) -> Path:
    """A local path standing for the store, whose folder gets the run's local files (clips, uploads): the SQLite
    file itself, or `runs/DBNAME` for a server store (nothing is written at that path itself)."""
    if isinstance(target, PostgresUrl):
        return SERVER_STORE_FOLDER / target.dbname
    return Path(target)
