"""Test videos made with PyAV from `skimage.data.astronaut()`: faces moving, crossing, leaving, none, rotated,
truncated, grayscale. Nothing is downloaded; each test writes what it needs into its own temp dir."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import av
import cv2
import numpy as np

from stream.capture.demo import background, head_patch, paste

Scene = Callable[[int], np.ndarray]  # frame index -> BGR frame
WIDTH, HEIGHT, FPS = 320, 240, 30


def write_video(
    path: Path, frames: Iterable[np.ndarray], fps: int = FPS, codec: str = "libx264", faststart: bool = False
) -> Path:
    """Encode BGR frames to `path` (mp4/mkv/avi by extension)."""
    frames = iter(frames)
    first = next(frames)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        for image in itertools.chain([first], frames):  # a generator's frames are never all in memory
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def render(scene: Scene, frames: int) -> list[np.ndarray]:
    return [scene(i) for i in range(frames)]


def _canvas(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    return background(width, height).copy()


def one_face(scale: float = 0.55, width: int = WIDTH, height: int = HEIGHT) -> Scene:
    """One face drifting right."""
    head = head_patch(scale=scale)

    def frame(i: int) -> np.ndarray:
        canvas = _canvas(width, height)
        paste(canvas, head, 40 + i, 60)
        return canvas

    return frame


def two_faces_crossing(scale: float = 0.5) -> Scene:
    """Face A moves right, face B (grayscale) moves left; they pass each other, overlapping partly, never fully."""
    colour = head_patch(scale=scale)
    gray = cv2.cvtColor(cv2.cvtColor(head_patch(flip=True, scale=scale), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)

    def frame(i: int) -> np.ndarray:
        canvas = _canvas(400, HEIGHT)
        paste(canvas, colour, 10 + 4 * i, 20)
        paste(canvas, gray, 310 - 4 * i, 120)
        return canvas

    return frame


def colour_and_gray_faces(scale: float = 0.5) -> Scene:
    """Two still faces side by side: colour at the left, grayscale at the right."""
    colour = head_patch(scale=scale)
    gray = cv2.cvtColor(cv2.cvtColor(head_patch(flip=True, scale=scale), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)

    def frame(i: int) -> np.ndarray:
        canvas = _canvas()
        paste(canvas, colour, 20 + (i % 4), 60)
        paste(canvas, gray, 200 - (i % 4), 60)
        return canvas

    return frame


def leaving_and_returning(away: range, scale: float = 0.55) -> Scene:
    """One face that is out of the picture during the frames in `away`."""
    visible = one_face(scale)

    def frame(i: int) -> np.ndarray:
        return _canvas() if i in away else visible(i % 10)

    return frame


def no_face() -> Scene:
    return lambda i: _canvas()


def crops_of(scene: Scene, box: tuple[int, int, int, int], frames: int = 3) -> list[np.ndarray]:
    x1, y1, x2, y2 = box
    return [scene(i)[y1:y2, x1:x2].copy() for i in range(frames)]


def tag_rotation(path: Path, matrix: tuple[int, ...]) -> None:
    """Write an MP4 display matrix into the video track header (`tkhd`), as phones do for portrait video."""
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd")
    version = data[at + 4]
    # tkhd: version/flags, times and ids (20 bytes v0, 32 v1), 8 reserved, layer/group/volume/reserved (8)
    offset = at + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(data)


ONE = 0x10000
PORTRAIT_MATRIX = (0, ONE, 0, -ONE, 0, 0, 0, 0, 0x40000000)  # display turns the picture 90° clockwise
PORTRAIT_MATRIX_CCW = (0, -ONE, 0, ONE, 0, 0, 0, 0, 0x40000000)  # display turns it 90° counterclockwise


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
