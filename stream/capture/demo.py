"""The built-in demo source, made on the fly from `skimage.data.astronaut()` (nothing is downloaded).

Two faces move across a 640x480 frame at 30 fps; the second leaves the picture and comes back. The clip
loops, paced in real time like a camera, until the pipeline stops it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from skimage import data

from stream.records import DecodedFrame

# The astronaut's head in the 512x512 picture (x1, y1, x2, y2).
ASTRONAUT_FACE_BOX = (165, 30, 275, 160)
# A patch around the head, with the margin a face detector needs to see a face.
ASTRONAUT_HEAD_PATCH = (140, 0, 300, 200)


@cache
def astronaut_bgr() -> np.ndarray:
    """skimage's astronaut (RGB) as a read-only 512x512x3 BGR frame."""
    frame = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    frame.setflags(write=False)
    return frame


def astronaut_face_crops() -> list[np.ndarray]:
    """A few face crops of different sizes and flips: sample input for timing the model."""
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    face = astronaut_bgr()[y1:y2, x1:x2]
    return [face.copy(), face[:, ::-1].copy(), face[::2, ::2].copy(), face[10:, 5:-5].copy()]


def head_patch(flip: bool = False, scale: float = 1.0) -> np.ndarray:
    x1, y1, x2, y2 = ASTRONAUT_HEAD_PATCH
    patch = astronaut_bgr()[y1:y2, x1:x2]
    patch = patch[:, ::-1] if flip else patch
    if scale != 1.0:
        patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(patch)


@dataclass(frozen=True)
class DemoScene:
    width: int = 640
    height: int = 480
    fps: float = 30.0
    loop_s: float = 12.0
    away_from_s: float = 5.0  # the second face is out of the picture between these two times
    away_until_s: float = 7.5


def background(width: int, height: int) -> np.ndarray:
    """A soft vertical gradient, so frames are not flat grey."""
    column = np.linspace(70, 140, height, dtype=np.float32)[:, None, None]
    tint = np.array([1.0, 0.9, 0.8], np.float32)[None, None, :]
    return np.broadcast_to(column * tint, (height, width, 3)).astype(np.uint8)


def paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Copy `patch` onto `canvas` with its top-left at (x, y), clipped to the canvas."""
    h, w = patch.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]


def render(scene: DemoScene, t: float, base: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The demo frame at clip time `t` seconds."""
    frame = base.copy()
    phase = 2 * math.pi * t / scene.loop_s
    paste(frame, first, int(40 + 120 * (1 - math.cos(phase))), int(60 + 40 * math.sin(2 * phase)))
    if not scene.away_from_s <= t < scene.away_until_s:
        # Walks off the right edge before `away_from_s` and walks back in after `away_until_s`.
        if t < scene.away_from_s:
            x = 420 + (t / scene.away_from_s) ** 3 * 260
        else:
            x = 680 - min(1.0, (t - scene.away_until_s) / 1.5) * 260
        paste(frame, second, int(x), 200)
    return frame


def demo_frames(scene: DemoScene | None = None, paced: bool = True) -> Iterator[DecodedFrame]:
    """An endless, looping demo clip; `paced` sleeps to the scene's frame rate, like a camera."""
    scene = scene or DemoScene()
    base = background(scene.width, scene.height)
    first, second = head_patch(), head_patch(flip=True, scale=0.85)
    frames_per_loop = int(scene.loop_s * scene.fps)
    started = time.monotonic()
    index = 0
    while True:
        t_media = index / scene.fps
        if paced:
            delay = started + t_media - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield DecodedFrame(render(scene, (index % frames_per_loop) / scene.fps, base, first, second), t_media)
        index += 1
