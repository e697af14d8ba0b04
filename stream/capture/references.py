"""Source references: what a user may name as a source (`demo`, a webcam, `rtsp://…`, `screen`, a file), parsed and
checked without opening anything, the typed errors a source raises, and redaction of secrets for display."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from model.labels import MIN_WINDOW
from stream.text import MASK, redact_url

LIVE_SCHEMES = ("rtsp", "rtsps")


VIDEO_DEVICE = re.compile(r"^/dev/video\d+$")


STILL_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic")
# The demuxers uploads and API-added files may use (FFmpeg's `format_whitelist`): plain containers that follow no
# references, so HLS, concat, SDP and the like never run on what a client sent.
CHECKED_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts"
CHECKED_FORMATS_SAID = "MP4/MOV, Matroska/WebM, AVI or MPEG-TS"
NAME_MAX, PATH_MAX = 255, 4095  # Linux's limits on a path's parts and on the whole (in bytes)


class SourceError(Exception):
    """A source that cannot be opened: missing camera, bad URL, unreadable file. The message is one line."""


class SourceLost(Exception):
    """A live source that was open stopped delivering frames."""


class SourceEnded(Exception):
    """A live source that ended for good and is not reconnected (a WebRTC publisher that left: only it can come
    back, as a new stream). The message, possibly empty, says why; it becomes the stream's last error."""


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source reference. `target` is what is opened; `display` is safe to log, store and name the stream
    after (`user:password@` and secret-looking query values replaced by `***`)."""

    kind: str  # demo | webcam | rtsp | screen | file | whip | upload (a file sent to the service)
    target: str
    live: bool
    display: str
    capture_size: str | None = None  # screen regions: "WxH"
    region: tuple[int, int, int, int] | None = None  # screen regions: (x, y, w, h) in pixels
    formats: str | None = None  # the demuxers FFmpeg may use (CHECKED_FORMATS); None: any (the CLI's own files)

    @property
    def background(self) -> bool:
        """An upload is scored with the time live streams leave free (stream/overload.py)."""
        return self.kind == "upload"


def redact(reference: str) -> str:
    """The reference without its secrets (stream.text.redact_url) when it is a URL, for logs and the store."""
    return redact_url(reference) if "://" in reference else reference


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
    problem = path_problem(reference)
    if problem:
        raise SourceError(problem)
    path = Path(reference)
    if path.is_dir():
        raise SourceError(f"{reference} is a folder: give a video file in it ({accepted})")
    if not path.is_file():
        raise SourceError(f"no such file: {reference} ({accepted})")
    if path.suffix.lower() in STILL_IMAGE_SUFFIXES:
        raise SourceError(still_image(reference))
    return SourceSpec("file", str(path), live=False, display=str(path))


def still_image(display: str, what: str = "") -> str:
    return (
        f"{display} is a still image{f' ({what})' if what else ''}: deepfake-stream scores faces over video frames "
        f"(a window needs at least {MIN_WINDOW} frames of a face), so still images are not supported; give a video"
    )


def path_problem(reference: str) -> str | None:
    """Why `reference` cannot be a file path at all, judged from the text alone (nothing on disk is touched): too
    long for the system, or control characters; None when it may be one."""
    if any(ord(c) < 32 or ord(c) == 127 for c in reference):
        return "a file path cannot hold control characters (or a NUL): give the video's path as it is"
    try:
        data = os.fsencode(reference)
    except UnicodeError:
        return "a file path must be text the system can name a file with (valid UTF-8)"
    longest = max((len(part) for part in data.split(b"/")), default=0)
    if len(data) > PATH_MAX or longest > NAME_MAX:
        return (
            f"the path is too long ({len(data)} bytes, its longest part {longest}): the system takes at most "
            f"{NAME_MAX} bytes a name and {PATH_MAX} in all"
        )
    return None


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
        "screen",
        f"{display}+{x},{y}",
        live=True,
        display=f"screen {display} {w}x{h}+{x}+{y}",
        capture_size=f"{w}x{h}",
        region=(x, y, w, h),
    )


def stream_name(spec: SourceSpec, taken: Sequence[str]) -> str:
    """A short, credential-free name not in `taken`: `demo`, `video0`, the file's stem, the camera's host_path."""
    if spec.kind in ("file", "upload"):
        base = Path(spec.target).stem
    elif spec.kind == "rtsp":
        base = _camera_name(spec.display)
    else:
        base = Path(spec.target).name
    base = base or spec.kind
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _camera_name(display: str) -> str:
    """host:port_path from a redacted URL, with its query's plain parameters (the masked ones left out)."""
    parts = urlsplit(display)
    kept = [pair for pair in parts.query.split("&") if pair and not pair.endswith(f"={MASK}")]
    name = parts.netloc.rpartition("@")[2] + parts.path + ("?" + "&".join(kept) if kept else "")
    return name.replace("/", "_").strip("_")
