"""The detector's side of the store over SQL, once for both backends: the writes that are one or a few statements of
queries.py, and the retention line; a backend says how a statement runs and owns sessions, scores, alerts, commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

from stream.records import AnnotatedFrame, ClusterCamera, FaceUpdate, StreamHealth, StreamInfo, Verdict
from stream.store.queries import Statement, WriteQueries

log = logging.getLogger("deepfake_stream")


def check_retention(retention_days: float | None) -> None:
    if retention_days is not None and not retention_days > 0:
        raise ValueError(f"retention_days must be a positive number of days or None to keep all, not {retention_days}")


class SqlWriter:
    """`ScoreWriter`'s statement-shaped writes. A backend gives `_execute` (the statements join the open batch: at once
    inside SQLite's transaction, queued until commit for PostgreSQL) and `commit`."""

    queries: WriteQueries
    retention_days: float | None

    def _execute(self, action: str, *statements: Statement) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def set_service_url(self, session_id: str, url: str) -> None:
        """Where this session's HTTP service listens (a URL without credentials: the token is never stored)."""
        self._execute("set service url", self.queries.set_session(session_id, "service_url", url))
        self.commit()

    def keep_alive(self, session_id: str) -> None:
        """The session is running though it wrote nothing new (a service waiting for streams): its last_active
        moves at the next commit, so the dashboard does not take it for dead."""
        self._execute("keep alive", self.queries.set_session(session_id, "last_active", time.time()))

    def end_session(self, session_id: str, ended_at: float | None = None) -> None:
        ended_at = time.time() if ended_at is None else ended_at
        self._execute("end session", self.queries.set_session(session_id, "ended_at", ended_at))
        self.commit()

    def add_stream(self, session_id: str, stream: StreamInfo) -> None:
        self._execute("add stream", self.queries.upsert_stream(session_id, stream))

    def write_face(self, session_id: str, face: FaceUpdate) -> None:
        """Insert or update a face; its first thumbnail and first times are kept."""
        self._execute("write face", self.queries.upsert_face(session_id, face))

    def write_verdict(self, session_id: str, verdict: Verdict) -> None:
        """A row in the verdict history, and the face's current verdict (if `write_face` has written it)."""
        self._execute("write verdict", *self.queries.verdict(session_id, verdict))

    def set_alert_clip(self, alert_id: int, clip_path: str) -> None:
        self._execute("set alert clip", self.queries.set_alert_clip(alert_id, clip_path))

    def write_health(self, session_id: str, health: StreamHealth, t: float) -> None:
        self._execute("write health", self.queries.upsert_health(session_id, health, t))

    def write_frame(self, session_id: str, frame: AnnotatedFrame) -> None:
        """Keep only the newest annotated frame per stream."""
        self._execute("write frame", self.queries.upsert_frame(session_id, frame))

    def write_cluster_status(self, cluster_id: str, cameras: Sequence[ClusterCamera]) -> None:
        """A cluster's placement as it is now (stream/cluster.py): one row per camera given, the cluster's rows for
        cameras no longer listed deleted; committed at once."""
        if any(c.cluster_id != cluster_id for c in cameras):
            raise ValueError(f"every row must be of cluster {cluster_id}")
        self._execute("write cluster status", *self.queries.cluster_status(cluster_id, cameras))
        self.commit()

    def _log_retention(self, store: object, removed: Mapping[str, Any], cutoff: float) -> None:
        """One line saying what the retention delete in `start_session` removed, and which setting did it."""
        rows = ", ".join(
            f"{count} {table}" for table, count in removed.items() if table not in ("sessions", "partitions") and count
        )
        dropped = removed.get("partitions") or []
        log.warning(
            "score store %s: deleted %d session(s) that ended (or were last active) before %s "
            "(store.retention_days: %g; null keeps everything) with their rows: %s%s",
            store,
            removed["sessions"],
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cutoff)),
            self.retention_days,
            rows or "none",
            f"; dropped partition(s) {', '.join(dropped)}" if dropped else "",
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
