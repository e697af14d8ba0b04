"""How fast a running upload goes and when it should end: its frames a second lately, the time its remaining frames
take at that rate, and, beside live cameras (which keep priority and leave it `pipeline.upload_share` of the loop),
a note saying so."""

from __future__ import annotations

from dataclasses import dataclass

from stream.detector import Detector
from stream.records import StreamHealth, StreamState

SLOWED = "slowed: live cameras take priority"
RUNNING = (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING)


@dataclass(frozen=True)
class UploadPace:
    note: str | None = None  # SLOWED while live cameras run beside it
    rate_fps: float | None = None  # frames scored a second, lately
    eta_s: float | None = None  # seconds its remaining frames take at that rate


def live_streams_running(detector: Detector) -> bool:
    """Whether a live stream (a camera, a publisher, a paced file) runs in the detector's loop now."""
    running = {h.stream_id for h in detector.health() if h.state in RUNNING}
    return any(source.live and source.stream_id in running for source in list(detector.sources))


def upload_pace(
    snapshot: StreamHealth | None, frames_done: int, frames_expected: int | None, beside_live: bool
) -> UploadPace:
    """A running upload's pace from its stream's health `snapshot` (None: not running)."""
    if snapshot is None or snapshot.state not in RUNNING:
        return UploadPace()
    rate = snapshot.fps_in
    eta = None
    if rate > 0 and frames_expected:
        eta = max(0, frames_expected - frames_done) / rate
    return UploadPace(SLOWED if beside_live else None, round(rate, 2), None if eta is None else round(eta, 1))
