"""The score store's two sides as Protocols: the writer the detector's store sink uses and the reader the
dashboard uses. SQLite (`stream/store/sqlite.py`) is the embedded implementation; a server database joins beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self

from stream.health import StreamHealth
from stream.scores import Alert, Verdict, WindowScore
from stream.store.records import (
    AlertRow,
    AnnotatedFrame,
    FaceRow,
    FaceSummary,
    FaceUpdate,
    FrameRow,
    ScoreRow,
    SessionInfo,
    SessionRow,
    StreamInfo,
    StreamRow,
    VerdictRow,
)


class ScoreWriter(Protocol):
    """The detector's side. Writes are batched until `commit()`; every write is idempotent (keyed by session,
    stream, track and frame or time), so re-sending after a restart is harmless."""

    def start_session(
        self, info: SessionInfo, config: Mapping[str, Any] | None = None, started_at: float | None = None
    ) -> str: ...

    def end_session(self, session_id: str, ended_at: float | None = None) -> None: ...

    def set_service_url(self, session_id: str, url: str) -> None: ...

    def add_stream(self, session_id: str, stream: StreamInfo) -> None: ...

    def write_scores(self, scores: Sequence[WindowScore]) -> None: ...

    def write_face(self, session_id: str, face: FaceUpdate) -> None: ...

    def write_verdict(self, session_id: str, verdict: Verdict) -> None: ...

    def write_alert(self, session_id: str, alert: Alert) -> int: ...

    def set_alert_clip(self, alert_id: int, clip_path: str) -> None: ...

    def write_health(self, session_id: str, health: StreamHealth, t: float) -> None: ...

    def write_frame(self, session_id: str, frame: AnnotatedFrame) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class ScoreReader(Protocol):
    """The dashboard's side: reads only, never blocks the writer."""

    def sessions(self) -> list[SessionRow]: ...

    def latest_session(self) -> SessionRow | None: ...

    def session_config(self, session_id: str) -> dict[str, Any] | None: ...

    def streams(self, session_id: str) -> list[StreamRow]: ...

    def streams_of_kind(self, kind: str) -> list[StreamRow]: ...

    def faces(self, session_id: str, stream_id: str | None = None) -> list[FaceRow]: ...

    def scores(
        self, session_id: str, stream_id: str, track_id: int, since_t: float | None = None, limit: int | None = None
    ) -> list[ScoreRow]: ...

    def verdicts(
        self, session_id: str, stream_id: str | None = None, track_id: int | None = None
    ) -> list[VerdictRow]: ...

    def alerts(self, session_id: str, stream_id: str | None = None) -> list[AlertRow]: ...

    def latest_frame(self, session_id: str, stream_id: str) -> FrameRow | None: ...

    def face_summaries(self, session_id: str) -> list[FaceSummary]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
