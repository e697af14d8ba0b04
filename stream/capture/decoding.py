"""Decoding with PyAV: open a source's container with bounded timeouts, decode upright BGR frames, read the expected
frame count."""

from __future__ import annotations

import time
from collections.abc import Iterator

import av
import cv2
import numpy as np

from stream.capture.content import is_still, sniff_file
from stream.capture.references import (
    CHECKED_FORMATS_SAID,
    SourceError,
    SourceLost,
    SourceSpec,
    TruncatedFile,
    still_image,
)
from stream.capture.x_display import display_of, display_size, outside_display
from stream.config import SourceOptions
from stream.records import DecodedFrame
from stream.text import one_line


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation so faces stand upright.

    `rotation` is PyAV's `VideoFrame.rotation`: FFmpeg's `av_display_rotation_get`, the angle the display
    matrix turns the picture counterclockwise. A phone's portrait video (matrix [0 1; -1 0]) reads -90 and is
    shown turned 90° clockwise, as FFmpeg's own autorotate does.
    """
    turns = {-90: cv2.ROTATE_90_CLOCKWISE, 270: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, -180: cv2.ROTATE_180}
    turns |= {90: cv2.ROTATE_90_COUNTERCLOCKWISE, -270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return cv2.rotate(image, turns[rotation]) if rotation in turns else image


def _reason(error: BaseException) -> str:
    """The error in one line, without the URL PyAV appends to its errors (it may carry a password)."""
    if isinstance(error, av.error.FFmpegError | OSError) and error.strerror:
        return one_line(str(error.strerror))
    return one_line(error)


def open_container(spec: SourceSpec, options: SourceOptions) -> av.container.InputContainer:
    """Open with PyAV, bounded in time; SourceError saying what to do when it cannot be opened."""
    kwargs: dict = {"timeout": (options.open_timeout_s, options.read_timeout_s)}
    if spec.kind in ("file", "upload"):
        what = sniff_file(spec.target)
        if what == "playlist" and spec.formats:
            raise SourceError(f"{spec.display} is a playlist, not a video: {not_checked_format()}")
        if what not in (None, "playlist"):
            raise SourceError(still_image(spec.display, what))
    if spec.formats:
        # Checked by FFmpeg before a demuxer reads anything past the probe: a playlist's references are never opened.
        kwargs["options"] = {"format_whitelist": spec.formats, "protocol_whitelist": "file"}
    if spec.kind == "rtsp":
        kwargs["options"] = {"rtsp_transport": "tcp"}
    elif spec.kind == "webcam":
        kwargs["format"] = "v4l2"
    elif spec.kind == "screen":
        kwargs["format"] = "x11grab"
        kwargs["options"] = {"framerate": "30", "draw_mouse": "0"}
        if spec.capture_size:
            kwargs["options"]["video_size"] = spec.capture_size
    began = time.monotonic()
    try:
        container = av.open(spec.target, **kwargs)
    except ConnectionRefusedError:
        raise SourceError(f"cannot connect to {spec.display}: connection refused (is the camera on?)") from None
    except av.error.HTTPNotFoundError:
        raise SourceError(f"{spec.display} was not found on the server (404): check the stream path") from None
    except av.error.HTTPUnauthorizedError:
        raise SourceError(f"{spec.display} refused the credentials (401): check the user and password") from None
    except (TimeoutError, av.error.TimeoutError, av.error.ExitError):
        raise SourceError(f"{spec.display} did not answer within {options.open_timeout_s:g} s") from None
    except av.error.InvalidDataError:
        if spec.live and time.monotonic() - began >= options.open_timeout_s * 0.9:
            raise SourceError(f"{spec.display} did not answer within {options.open_timeout_s:g} s") from None
        raise SourceError(
            f"{spec.display} is not a video FFmpeg can read (corrupt, truncated or another format)"
        ) from None
    except (av.error.FFmpegError, OSError) as error:
        if spec.kind == "screen":
            raise SourceError(_screen_problem(spec, error)) from None
        if spec.formats and isinstance(error, av.error.ArgumentError):  # FFmpeg: "Format not on whitelist"
            raise SourceError(f"{spec.display} is not a video in a format it may be: {not_checked_format()}") from None
        raise SourceError(f"cannot open {spec.display}: {_reason(error)}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{spec.display} has no video stream")
    if spec.kind in ("file", "upload"):
        stream = container.streams.video[0]
        if is_still(container.format.name, stream.codec_context.name, expected_frame_count(container)):
            container.close()
            raise SourceError(still_image(spec.display, stream.codec_context.name))
    return container


def not_checked_format() -> str:
    return f"uploads and files added through the service must be {CHECKED_FORMATS_SAID}"


def _screen_problem(spec: SourceSpec, error: BaseException) -> str:
    """Why x11grab could not open a screen source: the region against the display's size when it can be read."""
    try:
        size = display_size(display_of(spec))
    except SourceError as unopened:
        return str(unopened)
    problem = outside_display(spec, size) if size else None
    return problem or (
        f"cannot capture {spec.display}: {_reason(error)} (a region must lie inside the X display; "
        "`xdpyinfo | grep dimensions` shows its size)"
    )


def decode_frames(container: av.container.InputContainer, spec: SourceSpec) -> Iterator[DecodedFrame]:
    """Decode the first video stream to upright BGR frames. A decode error ends a file (truncated) or is a
    SourceLost for a live source."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base = stream.time_base
    try:
        for frame in container.decode(stream):
            image = upright(frame.to_ndarray(format="bgr24"), int(frame.rotation or 0))
            t_media = float(frame.pts * time_base) if frame.pts is not None and time_base else None
            yield DecodedFrame(image, t_media)
    except (av.error.FFmpegError, OSError) as error:
        if spec.live:
            raise SourceLost(f"{spec.display}: {_reason(error)}") from None
        raise TruncatedFile(_reason(error)) from None
    finally:
        container.close()


def expected_frame_count(container: av.container.InputContainer) -> int | None:
    stream = container.streams.video[0]
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.average_rate and stream.time_base:
        return round(float(stream.duration * stream.time_base * stream.average_rate))
    return None
