"""The score store in SQLite (WAL mode): the detector's writer and the dashboard's read-only reader.

Nothing outside this module writes SQL. Every run is a session; writes are idempotent, keyed by
(session, stream, track, frame_index), so re-sending is harmless and a second run never overwrites the first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from stream.health import StreamHealth, StreamState
from stream.scores import Alert, Verdict, VerdictState, WindowScore
from stream.store.records import (
    AlertRow,
    AnnotatedFrame,
    FaceRow,
    FaceSummary,
    FaceUpdate,
    FrameRow,
    HealthRow,
    ScoreRow,
    SessionInfo,
    SessionRow,
    StoreError,
    StreamInfo,
    StreamRow,
    VerdictRow,
)

SCHEMA_VERSION = 3  # 2: faces.crops, health.frames_read; 3: faces.crops_skipped, health.frames_thinned,
# health.crops_encoded, health.crops_skipped
_BUSY_TIMEOUT_S = 10.0
log = logging.getLogger("deepfake_stream")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, last_active REAL NOT NULL,
    checkpoint TEXT NOT NULL, calibrated INTEGER NOT NULL, window INTEGER NOT NULL, stride INTEGER NOT NULL,
    window_mode TEXT NOT NULL, threshold REAL NOT NULL, hysteresis REAL NOT NULL, device TEXT NOT NULL,
    engine TEXT NOT NULL, sources TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (session_id, stream_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, state TEXT NOT NULL, fps_in REAL NOT NULL,
    fps_scored REAL NOT NULL, frames_dropped INTEGER NOT NULL, reconnects INTEGER NOT NULL, last_error TEXT,
    t REAL NOT NULL, frames_read INTEGER NOT NULL DEFAULT 0, frames_thinned INTEGER NOT NULL DEFAULT 0,
    crops_encoded INTEGER NOT NULL DEFAULT 0, crops_skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, stream_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS faces (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, track_id INTEGER NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, first_t_media REAL, last_t_media REAL, state TEXT NOT NULL, verdict TEXT NOT NULL,
    verdict_since REAL, rolling_p_fake REAL, frames_scored INTEGER NOT NULL, thumbnail_jpeg BLOB,
    crops INTEGER NOT NULL DEFAULT 0, crops_skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, stream_id, track_id));
CREATE TABLE IF NOT EXISTS scores (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, track_id INTEGER NOT NULL, frame_index INTEGER NOT NULL,
    t_media REAL, window INTEGER NOT NULL, p_fake REAL NOT NULL, t_capture REAL NOT NULL, t_scored REAL NOT NULL,
    PRIMARY KEY (session_id, stream_id, track_id, frame_index)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verdicts (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, track_id INTEGER NOT NULL, since REAL NOT NULL,
    state TEXT NOT NULL, rolling_p_fake REAL NOT NULL,
    PRIMARY KEY (session_id, stream_id, track_id, since)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    alert_id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, stream_id TEXT NOT NULL,
    track_id INTEGER NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, p_fake REAL NOT NULL, clip_path TEXT,
    t_media REAL, UNIQUE (session_id, stream_id, track_id, kind, t));
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (session_id, t);
CREATE TABLE IF NOT EXISTS session_config (session_id TEXT PRIMARY KEY, config TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS frames (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, t REAL NOT NULL, jpeg BLOB NOT NULL,
    PRIMARY KEY (session_id, stream_id));
"""
# Older stores get the columns later versions added (the tables keep their rows): version 1 both steps, 2 the last.
MIGRATE_FROM_2 = """
ALTER TABLE faces ADD COLUMN crops_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN frames_thinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN crops_encoded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN crops_skipped INTEGER NOT NULL DEFAULT 0;
"""
MIGRATE_FROM_1 = (
    """
ALTER TABLE faces ADD COLUMN crops INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN frames_read INTEGER NOT NULL DEFAULT 0;
"""
    + MIGRATE_FROM_2
)
MIGRATIONS = {1: MIGRATE_FROM_1, 2: MIGRATE_FROM_2}
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


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _new_session_id(started_at: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started_at))
    return f"{stamp}{int(started_at % 1 * 1000):03d}Z-{secrets.token_hex(3)}"


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
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            # mkdir(exist_ok=True) raises FileExistsError only when the parent exists as something else.
            reason = f"{self.path.parent} is not a directory" if isinstance(error, FileExistsError) else error
            raise StoreError(
                f"cannot open the score store at {self.path}: {_one_line(reason)}; pass --db with a writable path"
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
                f"cannot open the score store at {self.path}: {_one_line(error)}; pass --db with a writable path"
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
                raise StoreError(f"score store at {self.path}: {action} failed: {_one_line(error)}") from None

    def start_session(
        self, info: SessionInfo, config: Mapping[str, Any] | None = None, started_at: float | None = None
    ) -> str:
        """A new session for this run; `config` (the run's resolved settings) is kept beside it."""
        started_at = time.time() if started_at is None else started_at
        session_id = _new_session_id(started_at)
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


def _health_row(r: Sequence[Any]) -> HealthRow:
    """A `streams` query row (stream, health columns from its fifth on) as the stream's health."""
    return HealthRow(
        r[1],
        StreamState(r[4]),
        *r[5:11],
        frames_read=r[11],
        frames_thinned=r[12],
        crops_encoded=r[13],
        crops_skipped=r[14],
    )


class SqliteReader:
    """The dashboard's side: a read-only connection; WAL lets it read while the detector writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no score store at {self.path} yet: start the detector with `python run_stream.py demo`")
        self._lock = threading.Lock()
        self._ready = False
        self._version = 0
        try:
            # mode=ro: the dashboard cannot write even by mistake. Streamlit may call from several threads.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the score store at {self.path}: {_one_line(error)}") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"the score store reader for {self.path} is closed")
            try:
                if not self._ready:
                    # The writer creates the schema just after the file: until then there is nothing to show.
                    self._version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                    self._ready = self._version > 0
                    if not self._ready:
                        return []
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise StoreError(f"cannot read the score store at {self.path}: {_one_line(error)}") from None

    def sessions(self) -> list[SessionRow]:
        rows = self._rows(
            "SELECT session_id, started_at, ended_at, last_active, checkpoint, calibrated, window, stride, "
            "window_mode, threshold, hysteresis, device, engine, sources FROM sessions "
            "ORDER BY started_at DESC, session_id DESC"
        )
        return [
            SessionRow(
                session_id=r[0],
                started_at=r[1],
                ended_at=r[2],
                last_active=r[3],
                checkpoint=r[4],
                calibrated=bool(r[5]),
                window=r[6],
                stride=r[7],
                window_mode=r[8],
                threshold=r[9],
                hysteresis=r[10],
                device=r[11],
                engine=r[12],
                sources=json.loads(r[13]),
            )
            for r in rows
        ]

    def latest_session(self) -> SessionRow | None:
        sessions = self.sessions()
        return sessions[0] if sessions else None

    def session_config(self, session_id: str) -> dict[str, Any] | None:
        """The resolved settings the session ran with (None for sessions written before they were kept)."""
        rows = self._rows("SELECT config FROM session_config WHERE session_id = ?", (session_id,))
        return json.loads(rows[0][0]) if rows else None

    def streams(self, session_id: str) -> list[StreamRow]:
        rows = self._rows(
            "SELECT s.session_id, s.stream_id, s.source, s.kind, h.state, h.fps_in, h.fps_scored, h.frames_dropped, "
            f"h.reconnects, h.last_error, h.t, {self._since(2, 'h.frames_read', '0')}, "
            f"{self._since(3, 'h.frames_thinned', '0')}, {self._since(3, 'h.crops_encoded', '0')}, "
            f"{self._since(3, 'h.crops_skipped', '0')} "
            "FROM streams s LEFT JOIN health h ON h.session_id = s.session_id AND h.stream_id = s.stream_id "
            "WHERE s.session_id = ? ORDER BY s.stream_id",
            (session_id,),
        )
        return [StreamRow(*r[:4], None if r[4] is None else _health_row(r)) for r in rows]

    def _since(self, version: int, column: str, fallback: str) -> str:
        """`column`, or `fallback` in a store written before schema `version` added it (never migrated when
        only read)."""
        if not self._ready:
            self._rows("SELECT 1")  # learns the version
        return column if self._version >= version else f"{fallback} AS {column.rsplit('.', 1)[-1]}"

    def faces(self, session_id: str, stream_id: str | None = None) -> list[FaceRow]:
        rows = self._rows(
            "SELECT stream_id, track_id, first_seen, last_seen, first_t_media, last_t_media, state, verdict, "
            "rolling_p_fake, frames_scored, thumbnail_jpeg, session_id, verdict_since, "
            f"{self._since(2, 'crops', '0')}, {self._since(3, 'crops_skipped', '0')} FROM faces "
            "WHERE session_id = ? AND (? IS NULL OR stream_id = ?) ORDER BY stream_id, track_id",
            (session_id, stream_id, stream_id),
        )
        return [FaceRow(*r[:7], VerdictState(r[7]), *r[8:13], crops=r[13], crops_skipped=r[14]) for r in rows]

    def scores(
        self,
        session_id: str,
        stream_id: str,
        track_id: int,
        since_t: float | None = None,
        limit: int | None = None,
    ) -> list[ScoreRow]:
        """Scores of one face in frame order; `since_t` keeps those captured at or after it, `limit` the newest."""
        rows = self._rows(
            "SELECT * FROM (SELECT * FROM scores WHERE session_id = ? AND stream_id = ? AND track_id = ? "
            "AND (? IS NULL OR t_capture >= ?) ORDER BY frame_index DESC LIMIT ?) ORDER BY frame_index",
            (session_id, stream_id, track_id, since_t, since_t, -1 if limit is None else limit),
        )
        return [ScoreRow(*r) for r in rows]

    def verdicts(self, session_id: str, stream_id: str | None = None, track_id: int | None = None) -> list[VerdictRow]:
        """Verdict changes, oldest first."""
        rows = self._rows(
            "SELECT session_id, stream_id, track_id, state, since, rolling_p_fake FROM verdicts WHERE session_id = ? "
            "AND (? IS NULL OR stream_id = ?) AND (? IS NULL OR track_id = ?) ORDER BY since, stream_id, track_id",
            (session_id, stream_id, stream_id, track_id, track_id),
        )
        return [VerdictRow(*r[:3], VerdictState(r[3]), *r[4:]) for r in rows]

    def alerts(self, session_id: str, stream_id: str | None = None) -> list[AlertRow]:
        rows = self._rows(
            "SELECT * FROM alerts WHERE session_id = ? AND (? IS NULL OR stream_id = ?) ORDER BY t DESC, alert_id DESC",
            (session_id, stream_id, stream_id),
        )
        return [AlertRow(*r) for r in rows]

    def latest_frame(self, session_id: str, stream_id: str) -> FrameRow | None:
        rows = self._rows(
            "SELECT stream_id, t, jpeg, session_id FROM frames WHERE session_id = ? AND stream_id = ?",
            (session_id, stream_id),
        )
        return FrameRow(*rows[0]) if rows else None

    def face_summaries(self, session_id: str) -> list[FaceSummary]:
        """Per face: media-time span it was seen (falling back to its scores' span), scores stored, final verdict,
        mean and max p_fake over its scores, crops encoded and skipped (None in stores older than schema 2 and 3)."""
        rows = self._rows(
            "SELECT f.stream_id, f.track_id, f.first_seen, f.last_seen, COALESCE(f.first_t_media, s.t0), "
            "COALESCE(f.last_t_media, s.t1), COALESCE(s.n, 0), f.verdict, s.mean_p, s.max_p, "
            f"{self._since(2, 'f.crops', 'NULL')}, {self._since(3, 'f.crops_skipped', 'NULL')} FROM faces f "
            "LEFT JOIN (SELECT stream_id, track_id, MIN(t_media) AS t0, MAX(t_media) AS t1, COUNT(*) AS n, "
            "AVG(p_fake) AS mean_p, MAX(p_fake) AS max_p FROM scores WHERE session_id = ? "
            "GROUP BY stream_id, track_id) s ON s.stream_id = f.stream_id AND s.track_id = f.track_id "
            "WHERE f.session_id = ? ORDER BY f.stream_id, f.track_id",
            (session_id, session_id),
        )
        return [FaceSummary(*r[:7], VerdictState(r[7]), *r[8:]) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
