"""The store's tables, written once for both backends: each column with its kind and the schema version that added it.

Both backends' CREATE TABLE statements, their migrations (a new table or column is a step of its version) and the
readers' stand-ins for columns an older store lacks are all made from these lists, so a new column is one line
here (and a new SCHEMA_VERSION). A change that is not a new table or column needs its own migration step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from stream.store.dialect import ID, KINDS, Dialect

SCHEMA_VERSION = 6  # 2: faces.crops, health.frames_read; 3: faces.crops_skipped, health.frames_thinned,
# health.crops_encoded, health.crops_skipped; 4: sessions.service_url; 5: the cluster_status table;
# 6: health.frames_expected, health.stop_reason, health.overload_share
_RESERVED = frozenset({"window"})  # a keyword in PostgreSQL: always quoted


def ident(name: str) -> str:
    return f'"{name}"' if name in _RESERVED else name


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # dialect.KEY, TEXT, INT, COUNT, REAL, BLOB or ID
    not_null: bool = True
    default: str | None = None  # SQL; a column added to existing tables needs one when NOT NULL
    since: int = 1  # the schema version that added it


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # the primary key (an ID column is its own)
    unique: tuple[str, ...] = ()
    index: tuple[str, tuple[str, ...]] | None = None  # (name, columns)
    rowid: bool = False  # SQLite: keep a rowid (WITHOUT ROWID otherwise)
    partition_key: str | None = None  # PostgreSQL: partitioned by ranges of this column
    since: int = 1

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _columns(spec: str) -> tuple[Column, ...]:
    """`name kind [null] [since N], …`, kind as in dialect.py. A column without `null` is NOT NULL, and DEFAULT 0 when
    a later version added it (so existing rows get a value); an `id` column is the key, NOT NULL by being one."""
    columns = []
    for item in spec.split(","):
        name, kind, *flags = item.split()
        null = flags[:1] == ["null"]
        since = flags[1 if null else 0 :]
        if kind not in KINDS or not (since == [] or (len(since) == 2 and since[0] == "since" and since[1].isdigit())):
            raise ValueError(f"bad column spec {item.strip()!r}")
        version = int(since[1]) if since else 1
        not_null = not null and kind != ID
        columns.append(Column(name, kind, not_null, "0" if version > 1 and not_null else None, version))
    return tuple(columns)


SESSIONS = Table(
    "sessions",
    # session_id: the key is NOT NULL in PostgreSQL by being the key; SQLite's rowid table never said so (kept).
    _columns(
        "session_id key null, started_at real, ended_at real null, last_active real, checkpoint text, calibrated int, "
        "window int, stride int, window_mode text, threshold real, hysteresis real, device text, engine text, "
        "sources text, service_url text null since 4"  # sources: a JSON list
    ),
    key=("session_id",),
    rowid=True,
)
STREAMS = Table(
    "streams", _columns("session_id key, stream_id key, source text, kind text"), key=("session_id", "stream_id")
)
HEALTH = Table(
    "health",
    _columns(
        "session_id key, stream_id key, state text, fps_in real, fps_scored real, frames_dropped count, "
        "reconnects count, last_error text null, t real, frames_read count since 2, frames_thinned count since 3, "
        "crops_encoded count since 3, crops_skipped count since 3, frames_expected count null since 6, "
        "stop_reason text null since 6, overload_share real since 6"
    ),
    key=("session_id", "stream_id"),
)
FACES = Table(
    "faces",
    _columns(
        "session_id key, stream_id key, track_id int, first_seen real, last_seen real, first_t_media real null, "
        "last_t_media real null, state text, verdict text, verdict_since real null, rolling_p_fake real null, "
        "frames_scored count, thumbnail_jpeg blob null, crops count since 2, crops_skipped count since 3"
    ),
    key=("session_id", "stream_id", "track_id"),
    rowid=True,
)
SCORES = Table(
    "scores",
    _columns(
        "session_id key, stream_id key, track_id int, frame_index count, t_media real null, window int, p_fake real, "
        "t_capture real, t_scored real"
    ),
    key=("session_id", "stream_id", "track_id", "frame_index"),
    partition_key="session_id",  # by session day: pg_schema.py
)
VERDICTS = Table(
    "verdicts",
    _columns("session_id key, stream_id key, track_id int, since real, state text, rolling_p_fake real"),
    key=("session_id", "stream_id", "track_id", "since"),
)
ALERTS = Table(
    "alerts",
    _columns(
        "alert_id id, session_id key, stream_id key, track_id int, kind text, t real, p_fake real, "
        "clip_path text null, t_media real null"
    ),
    unique=("session_id", "stream_id", "track_id", "kind", "t"),
    index=("alerts_by_time", ("session_id", "t")),
    rowid=True,
)
SESSION_CONFIG = Table("session_config", _columns("session_id key null, config text"), key=("session_id",))
FRAMES = Table(
    "frames",
    _columns("session_id key, stream_id key, t real, jpeg blob"),
    key=("session_id", "stream_id"),
    rowid=True,
)
CLUSTER_STATUS = Table(  # where each camera of a cluster of detectors runs (stream/cluster.py writes it)
    "cluster_status",
    _columns(
        "cluster_id key, camera key, source text, actor text null, node text null, session_id text null, state text, "
        "since real, t real, detail text null"
    ),
    key=("cluster_id", "camera"),
    since=5,
)
TABLES = (SESSIONS, STREAMS, HEALTH, FACES, SCORES, VERDICTS, ALERTS, SESSION_CONFIG, FRAMES, CLUSTER_STATUS)
# The rows of a session, deleted with it by retention; `sessions` last: retention finds old sessions through it.
SESSION_TABLES = (SCORES, VERDICTS, ALERTS, FACES, HEALTH, FRAMES, STREAMS, SESSION_CONFIG, SESSIONS)


def column_sql(dialect: Dialect, column: Column) -> str:
    sql = f"{ident(column.name)} {dialect.types[column.kind]}"
    if column.not_null:
        sql += " NOT NULL"
    return sql if column.default is None else f"{sql} DEFAULT {column.default}"


def table_sql(dialect: Dialect, table: Table) -> list[str]:
    """The table's CREATE TABLE (and its index), each statement without its `;`."""
    parts = [column_sql(dialect, c) for c in table.columns]
    if table.key:
        parts.append(f"PRIMARY KEY ({', '.join(table.key)})")
    if table.unique:
        parts.append(f"UNIQUE ({', '.join(table.unique)})")
    options = dialect.table_options(table.rowid, table.partition_key)
    statements = [f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(parts)}){options}"]
    if table.index:
        name, columns = table.index
        statements.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} ({', '.join(columns)})")
    return statements


def schema_sql(dialect: Dialect) -> list[str]:
    """Every table at SCHEMA_VERSION (IF NOT EXISTS: an existing store keeps its tables)."""
    return [statement for table in TABLES for statement in table_sql(dialect, table)]


def migration_sql(dialect: Dialect, version: int) -> list[str]:
    """What takes a store at `version` to `version + 1`: the tables and columns that version added."""
    statements = []
    for table in TABLES:
        if table.since == version + 1:
            statements += table_sql(dialect, table)
        elif table.since <= version:
            statements += [
                f"ALTER TABLE {table.name} ADD COLUMN {column_sql(dialect, c)}"
                for c in table.columns
                if c.since == version + 1
            ]
    return statements


def script(statements: list[str]) -> str:
    """Statements as one script, each ended by `;` on its own line."""
    return "".join(f"{s};\n" for s in statements)
