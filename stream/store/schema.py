"""The score store's SQLite schema (made from tables.py), its migrations from older versions, and the one-line error
text both backends use."""

from __future__ import annotations

from stream.store.dialect import SQLITE
from stream.store.tables import SCHEMA_VERSION, migration_sql, schema_sql, script

__all__ = ["BUSY_TIMEOUT_S", "MIGRATIONS", "SCHEMA_SQL", "SCHEMA_VERSION", "one_line"]

BUSY_TIMEOUT_S = 10.0
SCHEMA_SQL = "\n" + script(schema_sql(SQLITE))
# From version N (the store's PRAGMA user_version) to SCHEMA_VERSION: every step from N on; the tables keep their rows.
MIGRATIONS = {
    version: script([s for step in range(version, SCHEMA_VERSION) for s in migration_sql(SQLITE, step)])
    for version in range(1, SCHEMA_VERSION)
}


def one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split()) or type(error).__name__
