"""Face detection: MediaPipe Tasks `FaceDetector` (full-range model) -> `Detection`s with the original's
tight-box geometry."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.face_model import face_model_path


@dataclass(frozen=True)
class Detection:
    """One face in one frame: a tight (dlib-like) box in pixels and MediaPipe's confidence."""

    box_xyxy: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class BoxMapping:
    """MediaPipe's box -> the original's dlib HOG box, as fractions of MediaPipe's width and height.

    Defaults from seed-notes.md (one identity, 27 sizes): dlib's box is x + 0.066·w, y + 0.077·h,
    0.886·w × 0.887·h of MediaPipe's: the same centre, 2% lower, 11% smaller.
    """

    dx: float = 0.066
    dy: float = 0.077
    scale_w: float = 0.886
    scale_h: float = 0.887

    def __post_init__(self) -> None:
        if not (0.2 <= self.scale_w <= 3.0 and 0.2 <= self.scale_h <= 3.0):
            raise ValueError(f"box scales must be within 0.2..3.0, got {self.scale_w}, {self.scale_h}")

    def apply(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        left, top = x + self.dx * w, y + self.dy * h
        return (left, top, left + self.scale_w * w, top + self.scale_h * h)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ layer prints dozens of log lines while loading a model; keep the user's terminal clean."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class FaceDetector:
    """One MediaPipe detector in VIDEO mode for one stream (MediaPipe needs strictly increasing timestamps)."""

    def __init__(
        self,
        model_path: Path | None = None,
        min_score: float = 0.5,
        mapping: BoxMapping | None = None,
    ) -> None:
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path or face_model_path())),
            running_mode=vision.RunningMode.VIDEO,
            min_detection_confidence=min_score,
        )
        with _native_stderr_silenced():
            self._detector = vision.FaceDetector.create_from_options(options)
            # The native layer logs a warning about tensor alignment on a detector's first frame (sometimes a
            # little after the call returns): give it that frame here, where its output is silenced.
            blank = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
            self._detector.detect_for_video(blank, 0)
            time.sleep(0.05)
        self._mapping = mapping or BoxMapping()
        self._last_timestamp_ms = 0  # the warm-up frame's
        self._closed = False

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        """Faces in one HxWx3 uint8 BGR frame. Timestamps only need to increase; equal ones are nudged forward."""
        import mediapipe as mp

        timestamp_ms = max(int(timestamp_ms), self._last_timestamp_ms + 1)
        self._last_timestamp_ms = timestamp_ms
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        result = self._detector.detect_for_video(image, timestamp_ms)
        detections = []
        for found in result.detections:
            box = found.bounding_box
            score = found.categories[0].score if found.categories else 0.0
            mapped = self._mapping.apply(box.origin_x, box.origin_y, box.width, box.height)
            detections.append(Detection(box_xyxy=mapped, score=float(score)))
        return detections

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with _native_stderr_silenced():
                self._detector.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
