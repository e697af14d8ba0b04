"""The score store's records: what a run is (`SessionInfo`), what the writer takes, and the rows the reader returns.

Kept apart from `stream/store/sqlite.py` so that module stays the SQL and nothing else; `stream.store` re-exports
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.records import AnnotatedFrame, FaceUpdate, StreamHealth, VerdictState, WindowScore


class StoreError(Exception):
    """The score store cannot be opened or used; the message is one line meant for the user."""


@dataclass(frozen=True)
class SessionInfo:
    """What a run is: its model, its verdict settings and its (already redacted) sources."""

    checkpoint: str
    calibrated: bool
    window: int
    stride: int
    window_mode: str
    threshold: float
    hysteresis: float
    device: str
    engine: str
    sources: list[str]


@dataclass(frozen=True)
class SessionRow(SessionInfo):
    """A stored session: what the run is, plus when it ran."""

    session_id: str
    started_at: float
    ended_at: float | None
    last_active: float  # wall-clock of the session's last commit: a session never ended and long idle has died
    service_url: str | None = None  # where the detector's HTTP service listened (never its token); None: no service

    @property
    def info(self) -> SessionInfo:
        return SessionInfo(**{name: getattr(self, name) for name in SessionInfo.__dataclass_fields__})


@dataclass(frozen=True)
class HealthRow(StreamHealth):
    """A stream's last reported health, plus when it was written."""

    t: float  # wall-clock when this health was written


@dataclass(frozen=True)
class StreamRow:
    session_id: str
    stream_id: str
    source: str
    kind: str
    health: HealthRow | None  # None until the pipeline has reported on this stream


@dataclass(frozen=True)
class FaceRow(FaceUpdate):
    """A stored face."""

    session_id: str
    verdict_since: float | None  # None until a verdict change was written


# A stored score has exactly the fields of the record the pipeline wrote.
ScoreRow = WindowScore


@dataclass(frozen=True)
class VerdictRow:
    session_id: str
    stream_id: str
    track_id: int
    state: VerdictState
    since: float
    rolling_p_fake: float


@dataclass(frozen=True)
class AlertRow:
    alert_id: int
    session_id: str
    stream_id: str
    track_id: int
    kind: str
    t: float
    p_fake: float
    clip_path: str | None
    t_media: float | None


@dataclass(frozen=True)
class FrameRow(AnnotatedFrame):
    session_id: str
