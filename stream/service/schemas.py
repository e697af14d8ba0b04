"""The control API's request and response bodies (pydantic models), so /openapi.json describes every field exactly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream.records import StopReason, StreamState, VerdictState
from stream.store import Report

STREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
UploadState = Literal["queued", "running", "done", "failed"]


class Problem(BaseModel):
    """Every error answer: one line saying what was wrong."""

    detail: str


class Liveness(BaseModel):
    ok: bool


class StreamOut(BaseModel):
    """A stream of this detector and its health (ended streams stay listed with their final health)."""

    stream_id: str
    kind: str = Field(description="demo | webcam | rtsp | screen | file | whip | upload")
    source: str = Field(description="the source reference, credentials removed")
    state: StreamState
    fps_in: float
    fps_scored: float = Field(description="window scores per second, of all the stream's faces together")
    frames_read: int
    frames_dropped: int
    frames_thinned: int
    reconnects: int
    last_error: str | None
    stop_reason: StopReason | None = Field(
        default=None, description="an interrupted file or upload: what stopped it before its end"
    )
    percent_read: float | None = Field(
        default=None, description="a file or upload: its frames read, in percent of the frames it has"
    )


class AddStream(BaseModel):
    """A source to add: any reference `run_stream.py` accepts."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        max_length=2048,
        description="demo | rtsp://… | a video file inside service.media_dir | a webcam (0, /dev/video0) or "
        "screen[:X,Y,W,H] where the config allows them (GET /api/sources/policy)",
        examples=["rtsp://camera.local/stream"],
    )
    name: str | None = Field(
        default=None, pattern=STREAM_NAME, description="the stream id (default: made from the source)"
    )


class FaceOut(BaseModel):
    """A live face with its rolling score and verdict."""

    stream_id: str
    track_id: int
    state: Literal["live", "gone"]
    verdict: VerdictState
    rolling_p_fake: float | None
    frames_scored: int = Field(description="window scores so far")
    crops: int
    crops_skipped: int
    first_seen: float = Field(description="wall-clock seconds")
    last_seen: float
    first_t_media: float | None
    last_t_media: float | None


class UploadLimits(BaseModel):
    """The largest video an upload may send (`service.upload_max_mb`)."""

    max_bytes: int
    max_mb: float


class UploadOut(BaseModel):
    """An uploaded video scored as a stream of kind `upload`: its progress, then its report."""

    upload_id: str = Field(description="also its stream id")
    session_id: str
    file_name: str
    size_bytes: int | None = Field(description="its size (None for uploads of earlier sessions)")
    state: UploadState = Field(description="queued | running | done | failed (the reason in `error`)")
    status: str | None = Field(description="the report's stream status once it has ended (ok, no_faces, truncated…)")
    frames_done: int
    frames_expected: int | None
    error: str | None
    queue_position: int | None = Field(
        default=None, description="while `queued`: its place in the upload queue (1: the next to run)"
    )
    note: str | None = Field(
        default=None,
        description="while it runs beside live cameras: 'slowed: live cameras take priority' (it gets "
        "pipeline.upload_share of the loop's time)",
    )
    rate_fps: float | None = Field(default=None, description="while it runs: frames scored a second, lately")
    eta_s: float | None = Field(default=None, description="while it runs: seconds its frames left take at that rate")
    report: Report | None = Field(
        default=None, description="once it has ended: the same report (schema and verdict) as run_stream.py --report"
    )


class ApiError(Exception):
    """A request the service cannot do: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503, 507)
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route: 401 and 422 always, plus `codes` (one `Problem` body each)."""
    return {code: ERRORS[code] for code in (401, 422, *codes)}
