"""A throwaway PostgreSQL server for tests and benchmarks: the machine's own `initdb` and `pg_ctl` (Debian package
`postgresql`) on a temporary directory, run as an unprivileged user (PostgreSQL refuses root), listening on a unix
socket in that directory only (`listen_addresses = ''`: no TCP port at all, so nothing can reach it from the
network and no network namespace is needed), always stopped and removed at the end, also when a test fails.

Roles: `postgres` (superuser, `trust` on the socket, which only root and the server's user can reach: the
directory is theirs, mode 0700) makes the databases; `writer` logs in with a password (scram-sha-256), which the
tests hand over through PGPASSWORD only.

    with postgres_server() as server:
        url = server.create_database("t1")   # postgresql://postgres@/t1?host=/tmp/…
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

SERVER_USER_ENV = "DEEPFAKE_PG_USER"  # which unprivileged user runs the server (default: nobody)
WRITER_PASSWORD = "s3cret-test-passw0rd"


def pg_binary(name: str) -> str | None:
    """`initdb`/`pg_ctl` on PATH, else from the newest /usr/lib/postgresql/N/bin (where Debian puts them)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return candidates[-1] if candidates else None


def server_missing() -> str | None:
    """Why no server can be started here, or None."""
    for name in ("initdb", "pg_ctl"):
        if pg_binary(name) is None:
            return f"PostgreSQL's {name} is not installed (Debian package postgresql)"
    if shutil.which("runuser") is None and os.geteuid() == 0:
        return "runuser (util-linux) is missing: the server must run as an unprivileged user"
    try:
        pwd.getpwnam(os.environ.get(SERVER_USER_ENV, "nobody"))
    except KeyError:
        return f"no user {os.environ.get(SERVER_USER_ENV, 'nobody')} to run PostgreSQL as"
    return None


class PostgresServer:
    """A running server; `create_database` gives a fresh database's URL."""

    def __init__(self, folder: Path, user: str | None, durable: bool = False) -> None:
        self.folder = folder
        self.durable = durable  # False: fsync off (tests); True: PostgreSQL's own defaults (benchmarks)
        self.data = folder / "data"
        self.socket_dir = folder
        self.user = user  # None: this process is not root and runs the server itself

    def _as_server_user(self, *command: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *command] if self.user else list(command)

    def _run(self, *command: str) -> None:
        result = subprocess.run(self._as_server_user(*command), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed: {result.stderr.strip() or result.stdout.strip()}")

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@/{dbname}?host={quote(str(self.socket_dir), safe='/')}"

    def start(self) -> None:
        hba = self.folder / "pg_hba.conf"
        hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n")
        os.chmod(hba, 0o644)
        self._run(
            pg_binary("initdb") or "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c hba_file='{hba}' "
            "-c max_connections=60"
        )
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off -c shared_buffers=64MB"
        self._run(
            pg_binary("pg_ctl") or "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
        )

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def psql(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run `sql` as the superuser (autocommit) and return its rows (none for statements without)."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str, owner: str = "postgres") -> str:
        self.psql(f'CREATE DATABASE "{name}" OWNER {owner}')
        return self.url(name, owner)

    def create_writer_role(self) -> None:
        """The role `writer` with WRITER_PASSWORD (scram-sha-256: the password never crosses in clear)."""
        self.psql(f"CREATE ROLE writer LOGIN PASSWORD '{WRITER_PASSWORD}'")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._as_server_user(pg_binary("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
                capture_output=True,
                timeout=60,
            )


@contextlib.contextmanager
def postgres_server(durable: bool = False) -> Iterator[PostgresServer]:
    """Start a server in a new temporary directory; stop it and remove the directory on the way out.
    `durable`: keep PostgreSQL's default fsync and buffers (for timings), else fsync off (for fast tests)."""
    user = os.environ.get(SERVER_USER_ENV, "nobody") if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="deepfake-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    os.chmod(folder, 0o700)
    server = PostgresServer(folder, user, durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
