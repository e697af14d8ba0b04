"""The frozen records every stage exchanges (frames, faces, scores, verdicts, health) and the loop's event union.

The bottom layer: it imports nothing of the project, so the capture, faces, store, loop and sinks all name these
without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame. `t_capture` is wall-clock seconds; `t_media` media seconds from pts (None if unknown)."""

    stream_id: str
    index: int
    t_capture: float
    t_media: float | None
    image_bgr: np.ndarray


@dataclass(frozen=True)
class DecodedFrame:
    """What a producer yields before the capture thread numbers and stamps it."""

    image_bgr: np.ndarray
    t_media: float | None
    dropped_before: int = 0  # frames a live producer dropped just before this one (it keeps only the newest)


@dataclass(frozen=True)
class Detection:
    """One face in one frame: a tight (dlib-like) box in pixels and MediaPipe's confidence."""

    box_xyxy: tuple[float, float, float, float]
    score: float


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Track:
    """One tracked face in one frame. `age`: frames since the track was created; `last_seen`: its last matched frame."""

    stream_id: str
    track_id: int
    box: Box
    age: int
    last_seen: int


class StreamState(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    TRUNCATED = "truncated"  # a file that stopped decoding before its end: scored as far as it decoded
    INTERRUPTED = "interrupted"  # a file stopped by the user before its end
    FAILED = "failed"
    LOST = "lost"  # a live source that ended for good without being stopped: a WHIP publisher that vanished


class StopReason(StrEnum):
    """Who or what stopped a file or upload before its end (its state is then INTERRUPTED)."""

    DURATION = "duration"  # the run's --duration ran out
    CTRL_C = "ctrl-c"  # SIGINT
    SIGTERM = "sigterm"
    API = "api"  # a stop through the service's API (the dashboard's Stop button, a cluster's coordinator)
    RUN_ENDED = "run-ended"  # the run ended (its loop was stopped or closed) with the stream still going

    @property
    def said(self) -> str:
        """What stopped it, in words: `interrupted … by {said}`."""
        return _STOPPED_BY[self]


_STOPPED_BY = {
    StopReason.DURATION: "--duration",
    StopReason.CTRL_C: "Ctrl-C",
    StopReason.SIGTERM: "SIGTERM",
    StopReason.API: "a stop through the API",
    StopReason.RUN_ENDED: "the end of the run",
}


@dataclass(frozen=True)
class StreamHealth:
    """`fps_scored` counts window scores of all the stream's faces together (two faces scored at 30 fps: 60)."""

    stream_id: str
    state: StreamState
    fps_in: float
    fps_scored: float
    frames_dropped: int
    reconnects: int
    last_error: str | None
    frames_read: int = field(default=0, kw_only=True)  # frames the source delivered so far
    frames_thinned: int = field(default=0, kw_only=True)  # live frames left out evenly under overload
    crops_encoded: int = field(default=0, kw_only=True)  # face crops encoded ...
    crops_skipped: int = field(default=0, kw_only=True)  # ... and left out under overload (stream/overload.py)
    frames_expected: int | None = field(default=None, kw_only=True)  # a file's frame count (None: unknown, live)
    stop_reason: StopReason | None = field(default=None, kw_only=True)  # what stopped it, when INTERRUPTED
    # The larger of the shares of frames thinned and of crops skipped over the last `pipeline.overload_window_s`.
    overload_share: float = field(default=0.0, kw_only=True)

    @property
    def percent_read(self) -> float | None:
        """How far a file got: its frames read, in percent of the frames it has (None when that is unknown)."""
        return 100 * self.frames_read / self.frames_expected if self.frames_expected else None


@dataclass(frozen=True)
class StageTiming:
    stage: str
    p50_ms: float
    p95_ms: float
    count: int


class VerdictState(StrEnum):
    REAL = "REAL"
    FAKE = "FAKE"
    UNSURE = "UNSURE"


@dataclass(frozen=True)
class WindowScore:
    """One window's score for one face. `frame_index` is the newest frame in the window."""

    session_id: str
    stream_id: str
    track_id: int
    frame_index: int
    t_media: float | None  # media time of that frame in seconds (pts), None where the source has none
    window: int  # frames in the window
    p_fake: float
    t_capture: float  # wall-clock (time.time()) when that frame was captured
    t_scored: float  # wall-clock when the score was computed


@dataclass(frozen=True)
class Verdict:
    stream_id: str
    track_id: int
    state: VerdictState
    since: float  # wall-clock time the state began
    rolling_p_fake: float


@dataclass(frozen=True)
class Alert:
    stream_id: str
    track_id: int
    kind: str  # "turned_fake"
    t: float  # wall-clock
    p_fake: float
    clip_path: str | None
    t_media: float | None = None  # where in the media it happened (files: seconds into the file)


# Band edges are inclusive; this slack keeps a rolling mean like (0.6 * 5) / 5 from missing 0.5 + 0.1 by one ulp.
_BAND_EPS = 1e-9


def band_verdict(rolling: float, threshold: float, hysteresis: float, current: VerdictState) -> VerdictState:
    """The verdict band: FAKE at `rolling` >= threshold + hysteresis, REAL at <= threshold - hysteresis (both edges
    inclusive), otherwise `current` (inside the band a face keeps its state: that is what hysteresis means)."""
    if rolling >= threshold + hysteresis - _BAND_EPS:
        return VerdictState.FAKE
    if rolling <= threshold - hysteresis + _BAND_EPS:
        return VerdictState.REAL
    return current


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
class FinishedClip:
    """A written clip and the alert it is evidence for."""

    alert: Alert
    path: Path
    frames: int


@dataclass(frozen=True)
class StageTimings:
    """The loop's stage timings (p50/p95 over recent samples), published every health interval."""

    t: float  # wall-clock
    timings: tuple[StageTiming, ...]


@dataclass(frozen=True)
class EncodedBatch:
    """One loop iteration's encoding: how many crops went through the network (in engine calls of at most
    `pipeline.max_batch`, preprocessing included) and how long it took."""

    crops: int
    seconds: float


# Everything the loop emits. A verdict event is a change of a face's verdict; an alert is a face turning FAKE.
Event = (
    StreamInfo
    | WindowScore
    | FaceUpdate
    | Verdict
    | Alert
    | FinishedClip
    | AnnotatedFrame
    | StreamHealth
    | StageTimings
    | EncodedBatch
)


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
