"""The score store's SQLite schema (made from tables.py) and its migrations from older versions."""

from __future__ import annotations

from stream.store.dialect import SQLITE
from stream.store.tables import SCHEMA_VERSION, migration_sql, schema_sql, script

__all__ = ["BUSY_TIMEOUT_S", "MIGRATIONS", "SCHEMA_SQL", "SCHEMA_VERSION"]

BUSY_TIMEOUT_S = 10.0
SCHEMA_SQL = "\n" + script(schema_sql(SQLITE))
# From version N (the store's PRAGMA user_version) to SCHEMA_VERSION: every step from N on; the tables keep their rows.
MIGRATIONS = {
    version: script([s for step in range(version, SCHEMA_VERSION) for s in migration_sql(SQLITE, step)])
    for version in range(1, SCHEMA_VERSION)
}
