"""The score store in PostgreSQL: the detector's writer, for many detectors (processes or machines) writing to one
database, each its own session. The schema is in pg_schema.py and the dashboard's reader in postgres_reader.py.

Writes are kept in this process until `commit()` (called once per loop iteration), then sent in one transaction:
the scores as one `INSERT … SELECT FROM unnest(…)` and the rest in one pipeline, all with the same idempotent keys
as SQLite (`ON CONFLICT DO NOTHING`), so re-sending is harmless. A killed detector loses only that batch. A batch
the server refused stays queued and goes with the next commit. Connections come from a psycopg pool; the password
is libpq's business (PGPASSWORD, ~/.pgpass): it is never in the URL, a log line or the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, fields
from operator import attrgetter
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from stream.config.store_location import PostgresUrl
from stream.records import (
    Alert,
    AnnotatedFrame,
    ClusterCamera,
    FaceUpdate,
    StreamHealth,
    StreamInfo,
    Verdict,
    VerdictState,
    WindowScore,
)
from stream.store.keys import new_session_id, next_day, session_day
from stream.store.pg_schema import LOCK_KEY, PARTITION_NAME, PG_SCHEMA_SQL, create_partition_sql, migration_steps
from stream.store.records import SessionInfo, StoreError
from stream.store.schema import SCHEMA_VERSION
from stream.text import one_line

log = logging.getLogger("deepfake_stream")
CONNECT_TIMEOUT_S = 10
_score_values = attrgetter(*(f.name for f in fields(WindowScore)))
_HEALTH_COLUMNS = [f.name for f in fields(StreamHealth)]
_health_values = attrgetter(*_HEALTH_COLUMNS)
# Tables keyed by session (scores apart: whole partitions are dropped where they can be).
_SESSION_TABLES = ("verdicts", "alerts", "faces", "health", "frames", "streams", "session_config")
_INSERT_SCORES = (
    "INSERT INTO scores SELECT * FROM unnest(%s::text[], %s::text[], %s::int4[], %s::int8[], %s::float8[], "
    "%s::int4[], %s::float8[], %s::float8[], %s::float8[]) ON CONFLICT DO NOTHING"
)
_UPSERT_FACE = (
    "INSERT INTO faces (session_id, stream_id, track_id, first_seen, last_seen, first_t_media, last_t_media, state, "
    "verdict, rolling_p_fake, frames_scored, thumbnail_jpeg, crops, crops_skipped) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (session_id, stream_id, track_id) DO UPDATE SET "
    "first_seen = LEAST(faces.first_seen, excluded.first_seen), last_seen = excluded.last_seen, "
    "first_t_media = COALESCE(faces.first_t_media, excluded.first_t_media), "
    "last_t_media = COALESCE(excluded.last_t_media, faces.last_t_media), state = excluded.state, "
    "verdict = excluded.verdict, rolling_p_fake = excluded.rolling_p_fake, frames_scored = excluded.frames_scored, "
    "crops = excluded.crops, crops_skipped = excluded.crops_skipped, "
    "thumbnail_jpeg = COALESCE(faces.thumbnail_jpeg, excluded.thumbnail_jpeg)"
)
_UPSERT_HEALTH = (
    f"INSERT INTO health (session_id, {', '.join(_HEALTH_COLUMNS)}, t) "
    f"VALUES ({', '.join(['%s'] * (len(_HEALTH_COLUMNS) + 2))}) ON CONFLICT (session_id, stream_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in [*_HEALTH_COLUMNS[1:], "t"])
)


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
                conn.execute(step)
            conn.execute(PG_SCHEMA_SQL)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
    except psycopg.Error as error:
        raise StoreError(f"cannot open the score store at {url}: {one_line(error)}") from None
    finally:
        conn.close()


class PostgresWriter:
    """The detector's side over PostgreSQL: writes are queued until `commit()` (called every loop)."""

    def __init__(self, url: PostgresUrl, retention_days: float | None = 30, pool_size: int = 2) -> None:
        if retention_days is not None and not retention_days > 0:
            raise ValueError(
                f"retention_days must be a positive number of days or None to keep all, not {retention_days}"
            )
        self.url = url
        self.retention_days = retention_days
        self._lock = threading.RLock()
        self._own_sessions: list[str] = []
        self._scores: list[tuple[Any, ...]] = []
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
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

    def _queue(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._pool_or_fail()
            self._ops.append((sql, params))

    def start_session(
        self, info: SessionInfo, config: Mapping[str, Any] | None = None, started_at: float | None = None
    ) -> str:
        """A new session for this run (its day's partition made if new); `config` is kept beside it. Old sessions
        go first, under `store.retention_days`."""
        started_at = time.time() if started_at is None else started_at
        session_id = new_session_id(started_at)
        values = asdict(info)
        values["sources"] = json.dumps(list(info.sources))
        values["calibrated"] = int(info.calibrated)
        columns = ", ".join('"window"' if name == "window" else name for name in values)
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
                    conn.execute(
                        f"INSERT INTO sessions (session_id, started_at, last_active, {columns}) "
                        f"VALUES (%s, %s, %s, {', '.join(['%s'] * len(values))})",
                        (session_id, started_at, started_at, *values.values()),
                    )
                    if config is not None:
                        conn.execute("INSERT INTO session_config VALUES (%s, %s)", (session_id, json.dumps(config)))
            except psycopg.Error as error:
                raise StoreError(f"score store at {self.url}: start session failed: {one_line(error)}") from None
            self._own_sessions.append(session_id)
        if removed.get("sessions"):
            self._log_retention(removed, cutoff)
        return session_id

    def _retain(self, conn: psycopg.Connection, cutoff: float) -> dict[str, Any]:
        """Delete whole sessions that ended (or were last active) before `cutoff`, with their rows; a day's
        partition of scores left with no session is dropped whole. Rows removed per table."""
        old = [
            row[0]
            for row in conn.execute(
                "SELECT session_id FROM sessions WHERE COALESCE(ended_at, last_active) < %s", (cutoff,)
            )
        ]
        if not old:
            return {}
        removed: dict[str, Any] = {"scores": 0}
        for table in _SESSION_TABLES:
            removed[table] = conn.execute(f"DELETE FROM {table} WHERE session_id = ANY(%s)", (old,)).rowcount
        removed["sessions"] = conn.execute("DELETE FROM sessions WHERE session_id = ANY(%s)", (old,)).rowcount
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
            removed["scores"] += conn.execute(f"DELETE FROM {name} WHERE session_id = ANY(%s)", (old,)).rowcount
        removed["partitions"] = dropped
        return removed

    def _log_retention(self, removed: Mapping[str, Any], cutoff: float) -> None:
        """One line saying what the retention delete in `start_session` removed, and which setting did it."""
        rows = ", ".join(
            f"{count} {table}" for table, count in removed.items() if table not in ("sessions", "partitions") and count
        )
        dropped = removed.get("partitions") or []
        log.warning(
            "score store %s: deleted %d session(s) that ended (or were last active) before %s "
            "(store.retention_days: %g; null keeps everything) with their rows: %s%s",
            self.url,
            removed["sessions"],
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cutoff)),
            self.retention_days,
            rows or "none",
            f"; dropped partition(s) {', '.join(dropped)}" if dropped else "",
        )

    def set_service_url(self, session_id: str, url: str) -> None:
        """Where this session's HTTP service listens (a URL without credentials: the token is never stored)."""
        self._queue("UPDATE sessions SET service_url = %s WHERE session_id = %s", (url, session_id))
        self.commit()

    def keep_alive(self, session_id: str) -> None:
        """The session is running though it wrote nothing new (a service waiting for streams): its last_active
        moves at the next commit, so the dashboard does not take it for dead."""
        self._queue("UPDATE sessions SET last_active = %s WHERE session_id = %s", (time.time(), session_id))

    def add_stream(self, session_id: str, stream: StreamInfo) -> None:
        self._queue(
            "INSERT INTO streams VALUES (%s, %s, %s, %s) ON CONFLICT (session_id, stream_id) DO UPDATE SET "
            "source = excluded.source, kind = excluded.kind",
            (session_id, stream.stream_id, stream.source, stream.kind),
        )

    def write_scores(self, scores: Sequence[WindowScore]) -> None:
        if not scores:
            return
        with self._lock:
            self._pool_or_fail()
            self._scores.extend(_score_values(s) for s in scores)

    def write_face(self, session_id: str, face: FaceUpdate) -> None:
        """Insert or update a face; its first thumbnail and first times are kept."""
        self._queue(
            _UPSERT_FACE,
            (
                session_id,
                face.stream_id,
                face.track_id,
                face.first_seen,
                face.last_seen,
                face.first_t_media,
                face.last_t_media,
                face.state,
                VerdictState(face.verdict).value,
                face.rolling_p_fake,
                face.frames_scored,
                face.thumbnail_jpeg,
                face.crops,
                face.crops_skipped,
            ),
        )

    def write_verdict(self, session_id: str, verdict: Verdict) -> None:
        """A row in the verdict history, and the face's current verdict (if `write_face` has written it)."""
        state = VerdictState(verdict.state).value
        self._queue(
            "INSERT INTO verdicts VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (session_id, verdict.stream_id, verdict.track_id, verdict.since, state, verdict.rolling_p_fake),
        )
        self._queue(
            "UPDATE faces SET verdict = %s, verdict_since = %s, rolling_p_fake = %s "
            "WHERE session_id = %s AND stream_id = %s AND track_id = %s",
            (state, verdict.since, verdict.rolling_p_fake, session_id, verdict.stream_id, verdict.track_id),
        )

    def write_alert(self, session_id: str, alert: Alert) -> int:
        """The alert's id (written at once: the id comes from the server); re-sending returns the id it has."""
        key = (session_id, alert.stream_id, alert.track_id, alert.kind, alert.t)
        with self._lock:
            try:
                with self._pool_or_fail().connection() as conn:
                    row = conn.execute(
                        "INSERT INTO alerts (session_id, stream_id, track_id, kind, t, p_fake, clip_path, t_media) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING alert_id",
                        (*key, alert.p_fake, alert.clip_path, alert.t_media),
                    ).fetchone()
                    if row is None:
                        row = conn.execute(
                            "SELECT alert_id FROM alerts WHERE session_id = %s AND stream_id = %s AND track_id = %s "
                            "AND kind = %s AND t = %s",
                            key,
                        ).fetchone()
            except psycopg.Error as error:
                raise StoreError(f"score store at {self.url}: write alert failed: {one_line(error)}") from None
        return int(row[0])

    def set_alert_clip(self, alert_id: int, clip_path: str) -> None:
        self._queue("UPDATE alerts SET clip_path = %s WHERE alert_id = %s", (clip_path, alert_id))

    def write_health(self, session_id: str, health: StreamHealth, t: float) -> None:
        self._queue(_UPSERT_HEALTH, (session_id, *_health_values(health), t))

    def write_frame(self, session_id: str, frame: AnnotatedFrame) -> None:
        """Keep only the newest annotated frame per stream."""
        self._queue(
            "INSERT INTO frames VALUES (%s, %s, %s, %s) ON CONFLICT (session_id, stream_id) DO UPDATE SET "
            "t = excluded.t, jpeg = excluded.jpeg",
            (session_id, frame.stream_id, frame.t, frame.jpeg),
        )

    def write_cluster_status(self, cluster_id: str, cameras: Sequence[ClusterCamera]) -> None:
        """A cluster's placement as it is now (stream/cluster.py): one row per camera given, the cluster's rows for
        cameras no longer listed deleted; committed at once."""
        if any(c.cluster_id != cluster_id for c in cameras):
            raise ValueError(f"every row must be of cluster {cluster_id}")
        self._queue(
            "DELETE FROM cluster_status WHERE cluster_id = %s AND camera <> ALL(%s)",
            (cluster_id, [c.camera for c in cameras]),
        )
        columns = [f.name for f in fields(ClusterCamera)]
        for camera in cameras:
            self._queue(
                f"INSERT INTO cluster_status VALUES ({', '.join(['%s'] * len(columns))}) "
                "ON CONFLICT (cluster_id, camera) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in columns[2:]),
                astuple(camera),
            )
        self.commit()

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
                        cursor.execute(_INSERT_SCORES, [list(column) for column in zip(*scores, strict=True)])
                    for sql, params in ops:
                        cursor.execute(sql, params)
                    if self._own_sessions:
                        cursor.execute(
                            "UPDATE sessions SET last_active = %s WHERE session_id = ANY(%s)",
                            (time.time(), self._own_sessions),
                        )
            except psycopg.Error as error:
                self._scores, self._ops = scores + self._scores, ops + self._ops
                raise StoreError(f"score store at {self.url}: commit failed: {one_line(error)}") from None

    def end_session(self, session_id: str, ended_at: float | None = None) -> None:
        ended_at = time.time() if ended_at is None else ended_at
        self._queue("UPDATE sessions SET ended_at = %s WHERE session_id = %s", (ended_at, session_id))
        self.commit()

    def close(self) -> None:
        with self._lock:
            if self._pool is None:
                return
            try:
                self.commit()
            finally:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> PostgresWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
