"""The score store in PostgreSQL, the dashboard's side: the same read API as `SqliteReader`, over a small pool of
autocommit connections (each query its own snapshot: readers never block writers, nor writers readers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from stream.config.store_location import PostgresUrl
from stream.records import ClusterCamera, FaceSummary
from stream.store.postgres import CONNECT_TIMEOUT_S, connect, newer_schema_error, stored_version
from stream.store.records import AlertRow, FaceRow, FrameRow, ScoreRow, SessionRow, StoreError, StreamRow, VerdictRow
from stream.store.rows import face_row, face_summary, session_row, stream_row, verdict_row
from stream.store.schema import SCHEMA_VERSION
from stream.text import one_line

_SESSION_COLUMNS = (
    'session_id, started_at, ended_at, last_active, checkpoint, calibrated, "window", stride, window_mode, '
    "threshold, hysteresis, device, engine, sources, service_url"
)


class PostgresReader:
    """The dashboard's side: reads only. An empty database (no detector has written yet) reads as no sessions."""

    def __init__(self, url: PostgresUrl, pool_size: int = 4) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._ready = False
        connect(url, "read").close()  # one clear line now if the server, database or role is wrong
        self._pool: ConnectionPool | None = ConnectionPool(
            url.url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="deepfake-store-reader",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as error:
            self._pool.close()
            raise StoreError(f"cannot read the score store at {url}: {one_line(error)}") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            pool = self._pool
        if pool is None:
            raise StoreError(f"the score store reader for {self.url} is closed")
        try:
            with pool.connection() as conn:
                if not self._ready:
                    version = stored_version(conn)
                    if version > SCHEMA_VERSION:
                        raise newer_schema_error(self.url, version)
                    self._ready = version > 0
                    if not self._ready:
                        return []  # the first writer has not made the schema yet: nothing to show
                return conn.execute(sql, params).fetchall()
        except psycopg.Error as error:
            raise StoreError(f"cannot read the score store at {self.url}: {one_line(error)}") from None

    def sessions(self) -> list[SessionRow]:
        rows = self._rows(f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY started_at DESC, session_id DESC")
        return [session_row(r) for r in rows]

    def latest_session(self) -> SessionRow | None:
        sessions = self.sessions()
        return sessions[0] if sessions else None

    def session_config(self, session_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT config FROM session_config WHERE session_id = %s", (session_id,))
        return json.loads(rows[0][0]) if rows else None

    def streams(self, session_id: str) -> list[StreamRow]:
        return self._streams("s.session_id = %s ORDER BY s.stream_id", (session_id,))

    def streams_of_kind(self, kind: str) -> list[StreamRow]:
        """The streams of one kind (e.g. `upload`) in every session, newest session first."""
        return self._streams(
            "s.kind = %s ORDER BY (SELECT started_at FROM sessions WHERE session_id = s.session_id) DESC, "
            "s.session_id DESC, s.stream_id",
            (kind,),
        )

    def _streams(self, where: str, params: Sequence[Any]) -> list[StreamRow]:
        rows = self._rows(
            "SELECT s.session_id, s.stream_id, s.source, s.kind, h.state, h.fps_in, h.fps_scored, h.frames_dropped, "
            "h.reconnects, h.last_error, h.t, h.frames_read, h.frames_thinned, h.crops_encoded, h.crops_skipped "
            "FROM streams s LEFT JOIN health h ON h.session_id = s.session_id AND h.stream_id = s.stream_id "
            f"WHERE {where}",
            params,
        )
        return [stream_row(r) for r in rows]

    def faces(self, session_id: str, stream_id: str | None = None) -> list[FaceRow]:
        rows = self._rows(
            "SELECT stream_id, track_id, first_seen, last_seen, first_t_media, last_t_media, state, verdict, "
            "rolling_p_fake, frames_scored, thumbnail_jpeg, session_id, verdict_since, crops, crops_skipped "
            "FROM faces WHERE session_id = %s AND (%s::text IS NULL OR stream_id = %s::text) "
            "ORDER BY stream_id, track_id",
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
            "SELECT * FROM (SELECT * FROM scores WHERE session_id = %s AND stream_id = %s AND track_id = %s "
            "AND (%s::float8 IS NULL OR t_capture >= %s::float8) ORDER BY frame_index DESC LIMIT %s) s "
            "ORDER BY frame_index",
            (session_id, stream_id, track_id, since_t, since_t, limit),
        )
        return [ScoreRow(*r) for r in rows]

    def verdicts(self, session_id: str, stream_id: str | None = None, track_id: int | None = None) -> list[VerdictRow]:
        """Verdict changes, oldest first."""
        rows = self._rows(
            "SELECT session_id, stream_id, track_id, state, since, rolling_p_fake FROM verdicts WHERE session_id = %s "
            "AND (%s::text IS NULL OR stream_id = %s::text) AND (%s::int4 IS NULL OR track_id = %s::int4) "
            "ORDER BY since, stream_id, track_id",
            (session_id, stream_id, stream_id, track_id, track_id),
        )
        return [verdict_row(r) for r in rows]

    def alerts(self, session_id: str, stream_id: str | None = None) -> list[AlertRow]:
        rows = self._rows(
            "SELECT alert_id, session_id, stream_id, track_id, kind, t, p_fake, clip_path, t_media FROM alerts "
            "WHERE session_id = %s AND (%s::text IS NULL OR stream_id = %s::text) ORDER BY t DESC, alert_id DESC",
            (session_id, stream_id, stream_id),
        )
        return [AlertRow(*r) for r in rows]

    def latest_frame(self, session_id: str, stream_id: str) -> FrameRow | None:
        rows = self._rows(
            "SELECT stream_id, t, jpeg, session_id FROM frames WHERE session_id = %s AND stream_id = %s",
            (session_id, stream_id),
        )
        return FrameRow(*rows[0]) if rows else None

    def face_summaries(self, session_id: str) -> list[FaceSummary]:
        """Per face: media-time span it was seen (falling back to its scores' span), scores stored, final verdict,
        mean and max p_fake over its scores, crops encoded and skipped."""
        rows = self._rows(
            "SELECT f.stream_id, f.track_id, f.first_seen, f.last_seen, COALESCE(f.first_t_media, s.t0), "
            "COALESCE(f.last_t_media, s.t1), COALESCE(s.n, 0), f.verdict, s.mean_p, s.max_p, f.crops, f.crops_skipped "
            "FROM faces f LEFT JOIN (SELECT stream_id, track_id, MIN(t_media) AS t0, MAX(t_media) AS t1, "
            "COUNT(*) AS n, AVG(p_fake) AS mean_p, MAX(p_fake) AS max_p FROM scores WHERE session_id = %s "
            "GROUP BY stream_id, track_id) s ON s.stream_id = f.stream_id AND s.track_id = f.track_id "
            "WHERE f.session_id = %s ORDER BY f.stream_id, f.track_id",
            (session_id, session_id),
        )
        return [face_summary(r) for r in rows]

    def cluster_status(self, cluster_id: str | None = None) -> list[ClusterCamera]:
        """Where each camera of a cluster of detectors runs, by camera: the newest cluster's unless `cluster_id` names
        one; none in a database no cluster wrote to (or older than schema 5)."""
        present = self._rows("SELECT to_regclass('cluster_status') IS NOT NULL")
        if not present or not present[0][0]:
            return []
        rows = self._rows(
            "SELECT * FROM cluster_status "
            "WHERE cluster_id = COALESCE(%s, (SELECT MAX(cluster_id) FROM cluster_status)) ORDER BY camera",
            (cluster_id,),
        )
        return [ClusterCamera(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
