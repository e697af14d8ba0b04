"""The score store's records: what a run is (`SessionInfo`), what the writer takes, and the rows the reader returns.

Kept apart from `stream/store/sqlite.py` so that module stays the SQL and nothing else; `stream.store` re-exports
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.health import StreamHealth
from stream.scores import VerdictState, WindowScore


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
class StreamInfo:
    """One stream of a session: its id, its (redacted) source and its kind."""

    stream_id: str
    source: str
    kind: str


@dataclass(frozen=True)
class FaceUpdate:
    """A face as the detector last saw it: what the store keeps per face, and the loop's live-face snapshot."""

    stream_id: str
    track_id: int
    first_seen: float  # wall-clock
    last_seen: float
    first_t_media: float | None
    last_t_media: float | None
    state: str  # "live" | "gone"
    verdict: VerdictState
    rolling_p_fake: float | None
    frames_scored: int
    thumbnail_jpeg: bytes | None  # sent once, with the face's first update; the store keeps the first it gets
    crops: int = field(default=0, kw_only=True)  # crops encoded (a face with fewer than a window is never scored)
    crops_skipped: int = field(default=0, kw_only=True)  # crops the encoder had no time for (under overload)

    def __post_init__(self) -> None:
        if self.state not in ("live", "gone"):
            raise ValueError(f"face state must be 'live' or 'gone', got {self.state!r}")


@dataclass(frozen=True)
class AnnotatedFrame:
    """The newest frame of a stream with its faces drawn, as a JPEG, for the dashboard."""

    stream_id: str
    t: float  # wall-clock
    jpeg: bytes


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


@dataclass(frozen=True)
class FaceSummary:
    """One face over a whole run: what the CLI prints and reports, and what the store summarises."""

    stream_id: str
    track_id: int
    first_seen: float
    last_seen: float
    first_t_media: float | None
    last_t_media: float | None
    frames_scored: int  # window scores
    verdict: VerdictState
    mean_p_fake: float | None  # None when the face has no scores
    max_p_fake: float | None
    crops: int | None = None  # crops encoded; only the detector that saw the face knows (None from the store)
    crops_skipped: int | None = None  # crops not encoded under overload (None: a store older than schema 3)


@dataclass(frozen=True)
class ClusterCamera:
    """Where one camera of a cluster of detectors runs (`python -m stream.cluster`), as its coordinator last saw it:
    the store's `cluster_status` table, one row per (cluster, camera), so a dashboard can show the placement."""

    cluster_id: str  # the coordinator's run (ids sort by start time, like session ids)
    camera: str  # the camera's name in cameras.yaml: the stream id its detector scores it under
    source: str  # redacted: no credentials
    actor: str | None  # the detector actor that runs it; None while no detector has room for it
    node: str | None  # the Ray node that actor is on
    session_id: str | None  # the detector's store session its scores go to
    state: str  # assigned | running | reconnecting | failed | unplaced | stopped
    since: float  # wall-clock: when it took this actor and state
    t: float  # wall-clock: when the coordinator last wrote this row
    detail: str | None = None  # the last error, one line
