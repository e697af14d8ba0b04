"""The score store in SQLite (WAL mode): the detector's writer. The schema is in schema.py and the dashboard's
read-only reader in sqlite_reader.py; nothing outside these three writes SQL.

Every run is a session; writes are idempotent, keyed by (session, stream, track, frame_index), so re-sending is
harmless and a second run never overwrites the first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, astuple, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

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
from stream.store.keys import new_session_id
from stream.store.records import SessionInfo, StoreError
from stream.store.schema import BUSY_TIMEOUT_S, MIGRATIONS, SCHEMA_SQL, SCHEMA_VERSION
from stream.text import one_line

log = logging.getLogger("deepfake_stream")
_score_values = attrgetter(*(f.name for f in fields(WindowScore)))
_HEALTH_COLUMNS = [f.name for f in fields(StreamHealth)]
_health_values = attrgetter(*_HEALTH_COLUMNS)
# `sessions` last: the retention delete finds old sessions through it.
_SESSION_TABLES = (
    "scores",
    "verdicts",
    "alerts",
    "faces",
    "health",
    "frames",
    "streams",
    "session_config",
    "sessions",
)


class SqliteWriter:
    """The detector's side: writes are batched in one transaction until `commit()` (called every loop)."""

    def __init__(self, path: str | Path, retention_days: float | None = 30) -> None:
        if retention_days is not None and not retention_days > 0:
            raise ValueError(
                f"retention_days must be a positive number of days or None to keep all, not {retention_days}"
            )
        self.path = Path(path)
        self.retention_days = retention_days
        self._lock = threading.RLock()
        self._own_sessions: list[str] = []
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            # mkdir(exist_ok=True) raises FileExistsError only when the parent exists as something else.
            reason = f"{self.path.parent} is not a directory" if isinstance(error, FileExistsError) else error
            raise StoreError(
                f"cannot open the score store at {self.path}: {one_line(reason)}; pass --db with a writable path"
            ) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the score store at {self.path} has schema version {version}, newer than this program's "
                    f"{SCHEMA_VERSION}; upgrade deepfake-stream or pass --db with another path"
                )
            migrate = MIGRATIONS.get(version, "")
            conn.executescript(f"BEGIN IMMEDIATE;{migrate}{SCHEMA_SQL}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
        except sqlite3.Error as error:
            conn.close()
            raise StoreError(
                f"cannot open the score store at {self.path}: {one_line(error)}; pass --db with a writable path"
            ) from None
        except StoreError:
            conn.close()
            raise
        self._conn = conn

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection inside the open batch (begun on first write), with SQLite errors made one line."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"the score store writer for {self.path} is closed")
            try:
                if not self._conn.in_transaction:
                    # IMMEDIATE takes the write lock up front, so a second writer waits instead of deadlocking.
                    self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
            except sqlite3.Error as error:
                raise StoreError(f"score store at {self.path}: {action} failed: {one_line(error)}") from None

    def start_session(
        self, info: SessionInfo, config: Mapping[str, Any] | None = None, started_at: float | None = None
    ) -> str:
        """A new session for this run; `config` (the run's resolved settings) is kept beside it."""
        started_at = time.time() if started_at is None else started_at
        session_id = new_session_id(started_at)
        removed: dict[str, int] = {}  # rows the retention delete removed, per table
        cutoff = 0.0 if self.retention_days is None else time.time() - self.retention_days * 86400
        with self._write("start session") as conn:
            if self.retention_days is not None:
                old = "SELECT session_id FROM sessions WHERE COALESCE(ended_at, last_active) < ?"
                for table in _SESSION_TABLES:
                    deleted = conn.execute(f"DELETE FROM {table} WHERE session_id IN ({old})", (cutoff,))
                    removed[table] = deleted.rowcount
            values = asdict(info)
            values["sources"] = json.dumps(list(info.sources))
            values["calibrated"] = int(info.calibrated)
            conn.execute(
                f"INSERT INTO sessions (session_id, started_at, last_active, {', '.join(values)}) "
                f"VALUES (?, ?, ?, {', '.join('?' * len(values))})",
                (session_id, started_at, started_at, *values.values()),
            )
            if config is not None:
                conn.execute("INSERT INTO session_config VALUES (?, ?)", (session_id, json.dumps(config)))
            self._own_sessions.append(session_id)
        self.commit()
        if removed.get("sessions"):
            self._log_retention(removed, cutoff)
        return session_id

    def _log_retention(self, removed: Mapping[str, int], cutoff: float) -> None:
        """One line saying what the retention delete in `start_session` removed, and which setting did it."""
        rows = ", ".join(f"{count} {table}" for table, count in removed.items() if table != "sessions" and count)
        log.warning(
            "score store %s: deleted %d session(s) that ended (or were last active) before %s "
            "(store.retention_days: %g; null keeps everything) with their rows: %s",
            self.path,
            removed["sessions"],
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cutoff)),
            self.retention_days,
            rows or "none",
        )

    def set_service_url(self, session_id: str, url: str) -> None:
        """Where this session's HTTP service listens (a URL without credentials: the token is never stored)."""
        with self._write("set service url") as conn:
            conn.execute("UPDATE sessions SET service_url = ? WHERE session_id = ?", (url, session_id))
        self.commit()

    def keep_alive(self, session_id: str) -> None:
        """The session is running though it wrote nothing new (a service waiting for streams): its last_active
        moves at the next commit, so the dashboard does not take it for dead."""
        with self._write("keep alive") as conn:
            conn.execute("UPDATE sessions SET last_active = ? WHERE session_id = ?", (time.time(), session_id))

    def add_stream(self, session_id: str, stream: StreamInfo) -> None:
        with self._write("add stream") as conn:
            conn.execute(
                "INSERT INTO streams VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET source = excluded.source, kind = excluded.kind",
                (session_id, stream.stream_id, stream.source, stream.kind),
            )

    def write_scores(self, scores: Sequence[WindowScore]) -> None:
        if not scores:
            return
        with self._write("write scores") as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [_score_values(s) for s in scores]
            )

    def write_face(self, session_id: str, face: FaceUpdate) -> None:
        """Insert or update a face; its first thumbnail and first times are kept."""
        with self._write("write face") as conn:
            conn.execute(
                "INSERT INTO faces (session_id, stream_id, track_id, first_seen, last_seen, first_t_media, "
                "last_t_media, state, verdict, rolling_p_fake, frames_scored, thumbnail_jpeg, crops, crops_skipped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "first_seen = MIN(first_seen, excluded.first_seen), last_seen = excluded.last_seen, "
                "first_t_media = COALESCE(first_t_media, excluded.first_t_media), "
                "last_t_media = COALESCE(excluded.last_t_media, last_t_media), state = excluded.state, "
                "verdict = excluded.verdict, rolling_p_fake = excluded.rolling_p_fake, "
                "frames_scored = excluded.frames_scored, crops = excluded.crops, "
                "crops_skipped = excluded.crops_skipped, "
                "thumbnail_jpeg = COALESCE(excluded.thumbnail_jpeg, thumbnail_jpeg)",
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
        """A row in the verdict history, and the face's current verdict (if `upsert_face` has written it)."""
        state = VerdictState(verdict.state).value
        with self._write("write verdict") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, verdict.stream_id, verdict.track_id, verdict.since, state, verdict.rolling_p_fake),
            )
            conn.execute(
                "UPDATE faces SET verdict = ?, verdict_since = ?, rolling_p_fake = ? "
                "WHERE session_id = ? AND stream_id = ? AND track_id = ?",
                (state, verdict.since, verdict.rolling_p_fake, session_id, verdict.stream_id, verdict.track_id),
            )

    def write_alert(self, session_id: str, alert: Alert) -> int:
        """The alert's id; re-sending the same alert returns the id it already has."""
        key = (session_id, alert.stream_id, alert.track_id, alert.kind, alert.t)
        with self._write("write alert") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO alerts (session_id, stream_id, track_id, kind, t, p_fake, clip_path, t_media) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, alert.p_fake, alert.clip_path, alert.t_media),
            )
            row = conn.execute(
                "SELECT alert_id FROM alerts WHERE session_id = ? AND stream_id = ? AND track_id = ? AND kind = ? "
                "AND t = ?",
                key,
            ).fetchone()
        return int(row[0])

    def set_alert_clip(self, alert_id: int, clip_path: str) -> None:
        with self._write("set alert clip") as conn:
            conn.execute("UPDATE alerts SET clip_path = ? WHERE alert_id = ?", (clip_path, alert_id))

    def write_health(self, session_id: str, health: StreamHealth, t: float) -> None:
        with self._write("write health") as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO health (session_id, {', '.join(_HEALTH_COLUMNS)}, t) "
                f"VALUES ({', '.join('?' * (len(_HEALTH_COLUMNS) + 2))})",
                (session_id, *_health_values(health), t),
            )

    def write_frame(self, session_id: str, frame: AnnotatedFrame) -> None:
        """Keep only the newest annotated frame per stream."""
        with self._write("write frame") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?)", (session_id, frame.stream_id, frame.t, frame.jpeg)
            )

    def write_cluster_status(self, cluster_id: str, cameras: Sequence[ClusterCamera]) -> None:
        """A cluster's placement as it is now (stream/cluster.py): one row per camera given, the cluster's rows for
        cameras no longer listed deleted; committed at once."""
        if any(c.cluster_id != cluster_id for c in cameras):
            raise ValueError(f"every row must be of cluster {cluster_id}")
        names = [c.camera for c in cameras]
        with self._write("write cluster status") as conn:
            conn.execute(
                f"DELETE FROM cluster_status WHERE cluster_id = ? AND camera NOT IN ({', '.join('?' * len(names))})",
                (cluster_id, *names),
            )
            conn.executemany(
                f"INSERT OR REPLACE INTO cluster_status VALUES ({', '.join('?' * len(fields(ClusterCamera)))})",
                [astuple(c) for c in cameras],
            )
        self.commit()

    def commit(self) -> None:
        """Make the batch durable and visible to readers; a killed process loses only what came after."""
        with self._lock:
            if self._conn is None or not self._conn.in_transaction:
                return
            with self._write("commit") as conn:
                marks = ", ".join("?" * len(self._own_sessions))
                conn.execute(
                    f"UPDATE sessions SET last_active = ? WHERE session_id IN ({marks})",
                    (time.time(), *self._own_sessions),
                )
                conn.execute("COMMIT")

    def end_session(self, session_id: str, ended_at: float | None = None) -> None:
        ended_at = time.time() if ended_at is None else ended_at
        with self._write("end session") as conn:
            conn.execute("UPDATE sessions SET ended_at = ? WHERE session_id = ?", (ended_at, session_id))
        self.commit()

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self.commit()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
