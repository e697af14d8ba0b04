"""The score store's PostgreSQL schema: the tables of tables.py, a version table, and the scores table partitioned by
the day a session started.

Types (dialect.py): SQLite's REAL is a double, so DOUBLE PRECISION; BLOB is BYTEA. Key text columns compare bytewise
(COLLATE "C", as SQLite does), which also orders session ids by start time. Partitions are `scores_pYYYYMMDD`,
ranges of session ids (each id starts with its session's start day), so all of a session's scores are in one
partition and retention can drop a whole partition without ever cutting a session in half; ids made elsewhere go to
`scores_other`.
"""

from __future__ import annotations

import re

from stream.store.dialect import POSTGRES
from stream.store.keys import next_day
from stream.store.tables import SCHEMA_VERSION, migration_sql, schema_sql, script

# The first schema version the PostgreSQL store had; each later version needs its step in PG_MIGRATIONS.
PG_FIRST_VERSION = 4
# pg_advisory_xact_lock key that serialises schema set-up, session starts, partition creation and retention
# across every writer of the database (hash of "deepfake-stream store").
LOCK_KEY = 0x6466_7374_6F72_65

PG_SCHEMA_SQL = script(
    [
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        *schema_sql(POSTGRES),
        "CREATE TABLE IF NOT EXISTS scores_other PARTITION OF scores DEFAULT",
    ]
)
# From version N to SCHEMA_VERSION: run each step from N on, in order.
PG_MIGRATIONS = {
    version: script(migration_sql(POSTGRES, version)) for version in range(PG_FIRST_VERSION, SCHEMA_VERSION)
}
PARTITION_NAME = re.compile(r"^scores_p(\d{8})$")


def partition_name(day: str) -> str:
    return f"scores_p{day}"


def create_partition_sql(day: str) -> str:
    """The day's partition of `scores` (day: `YYYYMMDD`, checked by the caller through `keys.session_day`)."""
    if not day.isdigit() or len(day) != 8:
        raise ValueError(f"not a partition day: {day!r}")
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF scores "
        f"FOR VALUES FROM ('{day}') TO ('{next_day(day)}')"
    )


def migration_steps(version: int) -> list[str]:
    """The SQL that brings a store at `version` to SCHEMA_VERSION (KeyError: a step is missing)."""
    return [PG_MIGRATIONS[v] for v in range(max(version, PG_FIRST_VERSION), SCHEMA_VERSION)]
