"""Sources: turn a reference (`demo`, a webcam, `rtsp://…`, a file) into `Frame`s from one capture thread each.

Live sources drop the oldest frame when the pipeline is behind and reconnect with a growing, capped delay;
files wait for the pipeline (or are paced to their own frame rate with `realtime`).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import cv2
import numpy as np

from model.labels import MIN_WINDOW
from stream.config import SourceOptions
from stream.records import DecodedFrame, Frame, StreamState
from stream.timing import StageTimer

LIVE_SCHEMES = ("rtsp", "rtsps")
VIDEO_DEVICE = re.compile(r"^/dev/video\d+$")
STILL_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic")


class SourceError(Exception):
    """A source that cannot be opened: missing camera, bad URL, unreadable file. The message is one line."""


class SourceLost(Exception):
    """A live source that was open stopped delivering frames."""


class SourceEnded(Exception):
    """A live source that ended for good and is not reconnected (a WebRTC publisher that left: only it can come
    back, as a new stream). The message, possibly empty, says why; it becomes the stream's last error."""


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source reference. `display` is safe to log and store (credentials removed)."""

    kind: str  # demo | webcam | rtsp | screen | file | whip | upload (a file sent to the service)
    target: str
    live: bool
    display: str
    capture_size: str | None = None  # screen regions: "WxH"

    @property
    def background(self) -> bool:
        """An upload is scored with the time live streams leave free (stream/overload.py)."""
        return self.kind == "upload"


def redact(reference: str) -> str:
    """The reference with any user:password removed from a URL, for logs and the store."""
    parts = urlsplit(reference)
    if not parts.scheme or "@" not in parts.netloc:
        return reference
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def parse_source(reference: str) -> SourceSpec:
    """Recognise a source reference; SourceError (one line, saying what is accepted) when it cannot be used."""
    reference = reference.strip()
    accepted = "use demo, a webcam (0, /dev/video0), rtsp://host/path, or a video file"
    if reference == "demo":
        return SourceSpec("demo", "demo", live=True, display="demo")
    if reference.isdigit() or VIDEO_DEVICE.match(reference):
        device = f"/dev/video{reference}" if reference.isdigit() else reference
        if not Path(device).exists():
            raise SourceError(f"no camera at {device}: is it connected? (`ls /dev/video*` lists cameras)")
        return SourceSpec("webcam", device, live=True, display=device)
    scheme = urlsplit(reference).scheme.lower()
    if scheme in LIVE_SCHEMES:
        return SourceSpec("rtsp", reference, live=True, display=redact(reference))
    if reference == "screen" or reference.startswith("screen:"):
        return parse_screen(reference)
    if "://" in reference:
        raise SourceError(f"unknown source scheme {scheme}://: {accepted}")
    path = Path(reference)
    if path.is_dir():
        raise SourceError(f"{reference} is a folder: give a video file in it ({accepted})")
    if not path.is_file():
        raise SourceError(f"no such file: {reference} ({accepted})")
    if path.suffix.lower() in STILL_IMAGE_SUFFIXES:
        raise SourceError(
            f"{reference} is a still image: deepfake-stream scores faces over video frames (a window needs at "
            f"least {MIN_WINDOW} frames of a face), so still images are not supported; give a video"
        )
    return SourceSpec("file", str(path), live=False, display=str(path))


class TruncatedFile(Exception):
    """A file that stopped decoding before its end."""


SCREEN_REGION = re.compile(r"^screen(?::(\d+),(\d+),(\d+),(\d+))?$")


def parse_screen(reference: str) -> SourceSpec:
    """`screen` (the whole X display) or `screen:X,Y,W,H` (a region of it), captured with x11grab."""
    match = SCREEN_REGION.match(reference)
    if not match:
        raise SourceError(f"bad screen region {reference!r}: use screen or screen:X,Y,W,H (pixels)")
    display = os.environ.get("DISPLAY")
    if not display:
        raise SourceError("screen capture needs an X display, and DISPLAY is not set")
    if match.group(1) is None:
        return SourceSpec("screen", f"{display}", live=True, display=f"screen {display}")
    x, y, w, h = (int(v) for v in match.groups())
    if w < 16 or h < 16:
        raise SourceError(f"screen region {w}x{h} is too small: at least 16x16 pixels")
    return SourceSpec(
        "screen", f"{display}+{x},{y}", live=True, display=f"screen {display} {w}x{h}+{x}+{y}", capture_size=f"{w}x{h}"
    )


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation so faces stand upright.

    `rotation` is PyAV's `VideoFrame.rotation`: FFmpeg's `av_display_rotation_get`, the angle the display
    matrix turns the picture counterclockwise. A phone's portrait video (matrix [0 1; -1 0]) reads -90 and is
    shown turned 90° clockwise, as FFmpeg's own autorotate does.
    """
    turns = {-90: cv2.ROTATE_90_CLOCKWISE, 270: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, -180: cv2.ROTATE_180}
    turns |= {90: cv2.ROTATE_90_COUNTERCLOCKWISE, -270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return cv2.rotate(image, turns[rotation]) if rotation in turns else image


def _one_line(error: BaseException) -> str:
    """The error's first line, without the URL PyAV appends to its errors (it may carry a password)."""
    message = error.strerror if isinstance(error, av.error.FFmpegError | OSError) and error.strerror else str(error)
    text = str(message).strip().splitlines()
    return text[0] if text else type(error).__name__


def open_container(spec: SourceSpec, options: SourceOptions) -> av.container.InputContainer:
    """Open with PyAV, bounded in time; SourceError saying what to do when it cannot be opened."""
    kwargs: dict = {"timeout": (options.open_timeout_s, options.read_timeout_s)}
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
            raise SourceError(
                f"cannot capture {spec.display}: {_one_line(error)} (a region must lie inside the X display; "
                "`xdpyinfo | grep dimensions` shows its size)"
            ) from None
        raise SourceError(f"cannot open {spec.display}: {_one_line(error)}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{spec.display} has no video stream")
    return container


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
            raise SourceLost(f"{spec.display}: {_one_line(error)}") from None
        raise TruncatedFile(_one_line(error)) from None
    finally:
        container.close()


def expected_frame_count(container: av.container.InputContainer) -> int | None:
    stream = container.streams.video[0]
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.average_rate and stream.time_base:
        return round(float(stream.duration * stream.time_base * stream.average_rate))
    return None


class FrameBuffer:
    """A bounded frame queue. Live: a full buffer drops its oldest frame and the reader takes the newest;
    file: a full buffer makes the writer wait and the reader takes frames in order."""

    def __init__(self, capacity: int, live: bool) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        self._frames: deque[Frame] = deque()
        self._capacity = capacity
        self._live = live
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._ready:
            if self._live:
                while len(self._frames) >= self._capacity:
                    self._frames.popleft()
                    self.dropped += 1
            else:
                while len(self._frames) >= self._capacity and not stop.is_set():
                    self._ready.wait(0.1)
            self._frames.append(frame)
            self._ready.notify_all()

    def take(self) -> Frame | None:
        """The next frame to process, or None when none is waiting (never blocks)."""
        with self._ready:
            if not self._frames:
                return None
            if self._live:
                self.dropped += len(self._frames) - 1
                newest = self._frames.pop()
                self._frames.clear()
                frame = newest
            else:
                frame = self._frames.popleft()
            self._ready.notify_all()
            return frame

    def count_dropped(self, frames: int) -> None:
        """Frames a live producer dropped before they reached this buffer count as its drops."""
        with self._ready:
            self.dropped += frames

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def exhausted(self) -> bool:
        """Closed by the writer and fully read."""
        with self._ready:
            return self._closed and not self._frames

    def __len__(self) -> int:
        with self._ready:
            return len(self._frames)


Producer = Callable[[], Iterator[DecodedFrame]]
SOURCE_ENDINGS = (StreamState.ENDED, StreamState.TRUNCATED, StreamState.FAILED, StreamState.LOST)
TRUNCATION_TOLERANCE = 0.98  # containers' frame counts can be estimates; only a clear shortfall is a truncation


class Source:
    """One capture thread: pulls from a producer into a FrameBuffer, paces files in realtime, reconnects live.

    `open()` makes the first connection on the caller's thread, so a bad reference fails at once with a
    SourceError; `start()` then runs the capture thread. A test may inject any `producer`.
    """

    def __init__(
        self,
        stream_id: str,
        spec: SourceSpec,
        options: SourceOptions | None = None,
        producer: Producer | None = None,
        timer: StageTimer | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.timer = timer
        self.spec = spec
        self.options = options or SourceOptions()
        # Only files named on the command line are paced with `realtime`; an upload is analysed as fast as it can be.
        self._realtime = self.options.realtime and spec.kind == "file"
        self.live = spec.live or self._realtime
        self.buffer = FrameBuffer(self.options.live_buffer if self.live else self.options.file_buffer, self.live)
        self.state = StreamState.STARTING
        self.last_error: str | None = None
        self.reconnects = 0
        self.truncated = False
        self.lost = False  # ended for good with a reason (SourceEnded), not by being stopped
        self.read_to_end = False  # a file whose every frame was read (not stopped first)
        self.frames_read = 0
        self.expected_frames: int | None = None
        self.nominal_fps: float | None = None
        self._producer = producer or self._open_with_pyav
        self._pending: Iterator[DecodedFrame] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{stream_id}", daemon=True)

    def _open_with_pyav(self) -> Iterator[DecodedFrame]:
        container = open_container(self.spec, self.options)
        stream = container.streams.video[0]
        self.nominal_fps = float(stream.average_rate) if stream.average_rate else None
        if self.spec.kind in ("file", "upload"):
            self.expected_frames = expected_frame_count(container)
        return decode_frames(container, self.spec)

    def open(self) -> None:
        """First connection, on the caller's thread: SourceError when the source cannot be used at all."""
        try:
            self._pending = self._producer()
        except SourceError as error:
            self.state, self.last_error = StreamState.FAILED, str(error)
            self.buffer.close()
            raise

    def start(self) -> None:
        if self._pending is None and self.state == StreamState.STARTING:
            self.open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """`stop()` was called (the capture thread may still be unwinding)."""
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    @property
    def finished(self) -> bool:
        """The source will deliver no more frames and all it delivered has been taken."""
        return self.state in SOURCE_ENDINGS and self.buffer.exhausted

    @property
    def stopped_early(self) -> bool:
        """A file stopped before every frame it has was processed (read and taken from the buffer); settled as
        soon as `stop()` was called, whether or not the capture thread has unwound yet."""
        return not self.spec.live and not (self.read_to_end and len(self.buffer) == 0)

    def _connect(self) -> Iterator[DecodedFrame]:
        if self._pending is not None:
            frames, self._pending = self._pending, None
            return frames
        return self._producer()

    def _timed(self, frames: Iterator[DecodedFrame]) -> Iterator[DecodedFrame]:
        while True:
            began = time.perf_counter()
            decoded = next(frames, None)
            if decoded is None:
                return
            if self.timer:
                self.timer.record("decode", time.perf_counter() - began)
            yield decoded

    def _pump(self, frames: Iterator[DecodedFrame]) -> None:
        started, first_media = time.monotonic(), None
        for decoded in self._timed(frames):
            if self._stop.is_set():
                return
            self.state = StreamState.LIVE
            if self._realtime and decoded.t_media is not None:
                first_media = decoded.t_media if first_media is None else first_media
                delay = started + (decoded.t_media - first_media) - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            if decoded.dropped_before:
                self.buffer.count_dropped(decoded.dropped_before)
            frame = Frame(self.stream_id, self.frames_read, time.time(), decoded.t_media, decoded.image_bgr)
            self.frames_read += 1
            self.buffer.put(frame, self._stop)

    def _run(self) -> None:
        delay = self.options.reconnect_initial_s
        try:
            while not self._stop.is_set():
                delivered = self.frames_read
                try:
                    self._pump(self._connect())
                    if self._stop.is_set() or not self.spec.live:
                        self.read_to_end = not self._stop.is_set()
                        self._check_complete()
                        break
                    raise SourceLost(f"{self.spec.display} ended without being stopped")
                except SourceEnded as error:
                    self.last_error = str(error) or self.last_error
                    self.lost = bool(str(error)) and not self._stop.is_set()
                    break
                except (SourceError, SourceLost) as error:
                    self.last_error = str(error)
                except TruncatedFile as error:
                    self.truncated = True
                    self.last_error = self._truncation_message(str(error))
                    break
                if self.frames_read > delivered:  # this connection worked: the next retry starts small again
                    delay = self.options.reconnect_initial_s
                self.state = StreamState.RECONNECTING
                self.reconnects += 1
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.options.reconnect_max_s)
        finally:
            if self.lost:
                self.state = StreamState.LOST
            elif self.state != StreamState.FAILED:
                self.state = StreamState.TRUNCATED if self.truncated else StreamState.ENDED
            self.buffer.close()

    def _check_complete(self) -> None:
        if self._stop.is_set() or not self.expected_frames:
            return
        if self.frames_read < self.expected_frames * TRUNCATION_TOLERANCE:
            self.truncated = True
            self.last_error = self._truncation_message("the file ends early")

    def _truncation_message(self, reason: str) -> str:
        of = f" of {self.expected_frames}" if self.expected_frames else ""
        return f"{self.spec.display} is truncated: decoding stopped after {self.frames_read}{of} frames ({reason})"


def stream_name(spec: SourceSpec, taken: Sequence[str]) -> str:
    """A short, credential-free name not in `taken`: `demo`, `video0`, the file's stem, the camera's host_path."""
    if spec.kind in ("file", "upload"):
        base = Path(spec.target).stem
    elif spec.kind == "rtsp":
        base = spec.display.split("://", 1)[1].split("@")[-1].replace("/", "_").strip("_")
    else:
        base = Path(spec.target).name
    base = base or spec.kind
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name
