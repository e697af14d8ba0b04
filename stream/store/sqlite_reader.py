"""The score store in SQLite, the dashboard's side: a read-only connection that never blocks the detector's writer."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.records import ClusterCamera, FaceSummary
from stream.store.records import AlertRow, FaceRow, FrameRow, ScoreRow, SessionRow, StoreError, StreamRow, VerdictRow
from stream.store.rows import face_row, face_summary, session_row, stream_row, verdict_row
from stream.store.schema import BUSY_TIMEOUT_S
from stream.text import one_line


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
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the score store at {self.path}: {one_line(error)}") from None

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
                raise StoreError(f"cannot read the score store at {self.path}: {one_line(error)}") from None

    def sessions(self) -> list[SessionRow]:
        rows = self._rows(
            "SELECT session_id, started_at, ended_at, last_active, checkpoint, calibrated, window, stride, "
            f"window_mode, threshold, hysteresis, device, engine, sources, {self._since(4, 'service_url', 'NULL')} "
            "FROM sessions ORDER BY started_at DESC, session_id DESC"
        )
        return [session_row(r) for r in rows]

    def latest_session(self) -> SessionRow | None:
        sessions = self.sessions()
        return sessions[0] if sessions else None

    def session_config(self, session_id: str) -> dict[str, Any] | None:
        """The resolved settings the session ran with (None for sessions written before they were kept)."""
        rows = self._rows("SELECT config FROM session_config WHERE session_id = ?", (session_id,))
        return json.loads(rows[0][0]) if rows else None

    def streams(self, session_id: str) -> list[StreamRow]:
        return self._streams("s.session_id = ? ORDER BY s.stream_id", (session_id,))

    def streams_of_kind(self, kind: str) -> list[StreamRow]:
        """The streams of one kind (e.g. `upload`) in every session, newest session first."""
        return self._streams(
            "s.kind = ? ORDER BY (SELECT started_at FROM sessions WHERE session_id = s.session_id) DESC, "
            "s.session_id DESC, s.stream_id",
            (kind,),
        )

    def _streams(self, where: str, params: Sequence[Any]) -> list[StreamRow]:
        rows = self._rows(
            "SELECT s.session_id, s.stream_id, s.source, s.kind, h.state, h.fps_in, h.fps_scored, h.frames_dropped, "
            f"h.reconnects, h.last_error, h.t, {self._since(2, 'h.frames_read', '0')}, "
            f"{self._since(3, 'h.frames_thinned', '0')}, {self._since(3, 'h.crops_encoded', '0')}, "
            f"{self._since(3, 'h.crops_skipped', '0')} "
            "FROM streams s LEFT JOIN health h ON h.session_id = s.session_id AND h.stream_id = s.stream_id "
            f"WHERE {where}",
            params,
        )
        return [stream_row(r) for r in rows]

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
        return [face_row(r) for r in rows]

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
        return [verdict_row(r) for r in rows]

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
        return [face_summary(r) for r in rows]

    def cluster_status(self, cluster_id: str | None = None) -> list[ClusterCamera]:
        """Where each camera of a cluster of detectors runs, by camera: the newest cluster's unless `cluster_id` names
        one; none in a store no cluster wrote to (or older than schema 5)."""
        if not self._ready:
            self._rows("SELECT 1")  # learns the version
        if self._version < 5:
            return []
        rows = self._rows(
            "SELECT * FROM cluster_status WHERE cluster_id = COALESCE(?, (SELECT MAX(cluster_id) FROM cluster_status)) "
            "ORDER BY camera",
            (cluster_id,),
        )
        return [ClusterCamera(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
