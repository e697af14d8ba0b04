"""The score store in PostgreSQL: the detector's writer, for many detectors (processes or machines) writing to one
database, each its own session. Its statements are in queries.py, its schema in pg_schema.py and the dashboard's
reader in postgres_reader.py.

Writes are kept in this process until `commit()` (called once per loop iteration), then sent in one transaction:
the scores as one `INSERT … SELECT FROM unnest(…)` and the rest in one pipeline, all with the same idempotent keys
as SQLite (`ON CONFLICT DO NOTHING`), so re-sending is harmless. A killed detector loses only that batch. A batch
the server refused stays queued and goes with the next commit. Connections come from a psycopg pool; the password
is libpq's business (PGPASSWORD, ~/.pgpass): it is never in the URL, a log line or the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from stream.config.store_location import PostgresUrl
from stream.records import Alert, WindowScore
from stream.store.dialect import POSTGRES
from stream.store.keys import new_session_id, next_day, session_day
from stream.store.pg_schema import LOCK_KEY, PARTITION_NAME, PG_SCHEMA_SQL, create_partition_sql, migration_steps
from stream.store.queries import Statement, WriteQueries
from stream.store.records import SessionInfo, StoreError
from stream.store.schema import SCHEMA_VERSION
from stream.store.tables import SCORES, SESSION_TABLES
from stream.store.writer import SqlWriter, check_retention
from stream.text import one_line

CONNECT_TIMEOUT_S = 10


def connect(url: PostgresUrl, action: str) -> psycopg.Connection:
    """One autocommit connection, or a one-line StoreError saying why not."""
    try:
        return psycopg.connect(url.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as error:
        raise StoreError(f"cannot {action} the score store at {url}: {one_line(error)}") from None


def newer_schema_error(url: PostgresUrl, version: int) -> StoreError:
    return StoreError(
        f"the score store at {url} has schema version {version}, newer than this program's {SCHEMA_VERSION}; "
        "upgrade deepfake-stream or pass --db with another database"
    )


def stored_version(conn: psycopg.Connection) -> int:
    """The schema version in the database; 0 before the schema exists."""
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _make_schema(url: PostgresUrl) -> None:
    """Create the schema, migrate an older one, refuse a newer one (under the store's lock: writers start at once)."""
    conn = connect(url, "open")
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            version = stored_version(conn)
            if version > SCHEMA_VERSION:
                raise newer_schema_error(url, version)
            for step in migration_steps(version) if version else []:
                if step:
                    conn.execute(step)
            conn.execute(PG_SCHEMA_SQL)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
    except psycopg.Error as error:
        raise StoreError(f"cannot open the score store at {url}: {one_line(error)}") from None
    finally:
        conn.close()


class PostgresWriter(SqlWriter):
    """The detector's side over PostgreSQL: writes are queued until `commit()` (called every loop)."""

    queries = WriteQueries(POSTGRES)

    def __init__(self, url: PostgresUrl, retention_days: float | None = 30, pool_size: int = 2) -> None:
        check_retention(retention_days)
        self.url = url
        self.retention_days = retention_days
        self._lock = threading.RLock()
        self._own_sessions: list[str] = []
        self._scores: list[tuple[Any, ...]] = []
        self._ops: list[Statement] = []
        _make_schema(url)
        self._pool: ConnectionPool | None = ConnectionPool(
            url.url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="deepfake-store-writer",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as error:
            self._pool.close()
            raise StoreError(f"cannot open the score store at {url}: {one_line(error)}") from None

    def _pool_or_fail(self) -> ConnectionPool:
        if self._pool is None:
            raise StoreError(f"the score store writer for {self.url} is closed")
        return self._pool

    def _execute(self, action: str, *statements: Statement) -> None:
        """Queued for the next commit (its errors are the commit's)."""
        with self._lock:
            self._pool_or_fail()
            self._ops.extend(statements)

    def start_session(
        self, info: SessionInfo, config: Mapping[str, Any] | None = None, started_at: float | None = None
    ) -> str:
        """A new session for this run (its day's partition made if new); `config` is kept beside it. Old sessions
        go first, under `store.retention_days`."""
        started_at = time.time() if started_at is None else started_at
        session_id = new_session_id(started_at)
        cutoff = 0.0 if self.retention_days is None else time.time() - self.retention_days * 86400
        self.commit()
        with self._lock:
            try:
                with self._pool_or_fail().connection() as conn, conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                    removed = self._retain(conn, cutoff) if self.retention_days is not None else {}
                    day = session_day(session_id)
                    if day is not None:
                        conn.execute(create_partition_sql(day))
                    conn.execute(*self.queries.insert_session(session_id, started_at, info))
                    if config is not None:
                        conn.execute(*self.queries.session_config(session_id, config))
            except psycopg.Error as error:
                raise StoreError(f"score store at {self.url}: start session failed: {one_line(error)}") from None
            self._own_sessions.append(session_id)
        if removed.get("sessions"):
            self._log_retention(self.url, removed, cutoff)
        return session_id

    def _retain(self, conn: psycopg.Connection, cutoff: float) -> dict[str, Any]:
        """Delete whole sessions that ended (or were last active) before `cutoff`, with their rows; a day's
        partition of scores left with no session is dropped whole. Rows removed per table."""
        old = [row[0] for row in conn.execute(*self.queries.old_sessions(cutoff))]
        if not old:
            return {}
        removed: dict[str, Any] = {"scores": 0}
        for table in SESSION_TABLES:
            if table is not SCORES:  # by partition, below
                removed[table.name] = conn.execute(*self.queries.delete_sessions(table.name, old)).rowcount
        dropped = []
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'scores'::regclass ORDER BY c.relname"
        ).fetchall():
            match = PARTITION_NAME.match(name)
            day = match.group(1) if match else None
            if day is not None and day <= max(session_day(s) or "" for s in old):
                live = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM sessions WHERE session_id >= %s AND session_id < %s)",
                    (day, next_day(day)),
                ).fetchone()[0]
                if not live:
                    removed["scores"] += conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                    conn.execute(f"DROP TABLE {name}")
                    dropped.append(name)
                    continue
            removed["scores"] += conn.execute(*self.queries.delete_sessions(name, old)).rowcount
        removed["partitions"] = dropped
        return removed

    def write_scores(self, scores: Sequence[WindowScore]) -> None:
        if not scores:
            return
        with self._lock:
            self._pool_or_fail()
            self._scores.extend(self.queries.score_rows(scores))

    def write_alert(self, session_id: str, alert: Alert) -> int:
        """The alert's id (written at once: the id comes from the server); re-sending returns the id it has."""
        with self._lock:
            try:
                with self._pool_or_fail().connection() as conn:
                    row = conn.execute(*self.queries.insert_alert(session_id, alert)).fetchone()
                    if row is None:
                        row = conn.execute(*self.queries.alert_id(session_id, alert)).fetchone()
            except psycopg.Error as error:
                raise StoreError(f"score store at {self.url}: write alert failed: {one_line(error)}") from None
        return int(row[0])

    def commit(self) -> None:
        """Send the queued batch in one transaction; a killed process loses only what came after. A refused batch
        stays queued for the next commit (every write is idempotent) and this raises StoreError."""
        with self._lock:
            if not self._scores and not self._ops:
                return
            pool = self._pool_or_fail()
            scores, ops = self._scores, self._ops
            self._scores, self._ops = [], []
            try:
                with pool.connection() as conn, conn.transaction(), conn.pipeline(), conn.cursor() as cursor:
                    if scores:
                        cursor.execute(self.queries.insert_scores, POSTGRES.bulk_params(scores))
                    for sql, params in ops:
                        cursor.execute(sql, params)
                    if self._own_sessions:
                        cursor.execute(*self.queries.touch_sessions(time.time(), self._own_sessions))
            except psycopg.Error as error:
                self._scores, self._ops = scores + self._scores, ops + self._ops
                raise StoreError(f"score store at {self.url}: commit failed: {one_line(error)}") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is None:
                return
            try:
                self.commit()
            finally:
                self._pool.close()
                self._pool = None
