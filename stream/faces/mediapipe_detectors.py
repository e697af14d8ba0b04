"""Face detection: MediaPipe Tasks `FaceDetector` (full-range model) -> `Detection`s with the original's
tight-box geometry."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from stream.config import BoxMapping, FaceSettings
from stream.faces.model_files import face_model_path
from stream.records import Detection

_FACES = FaceSettings()  # the config's defaults, for a detector built outside a run (tests, benchmarks)

# MediaPipe's native layer warns once per process, from one of its own threads and a little after the first frame's
# detect() has returned, that the input tensor was not aligned. The first warm-up waits for that line (bounded).
ALIGNMENT_WARNING = b"Input tensor memory is not aligned"
FIRST_WARNING_WAIT_S = 3.0
_first_warning = threading.Event()  # set once the line was swallowed (or waited for) in this process


@contextlib.contextmanager
def _native_stderr_silenced(wait_for_first_warning: bool = False) -> Iterator[None]:
    """MediaPipe's C++ layer prints dozens of log lines while loading a model; keep the user's terminal clean: fd 2
    goes to a pipe that a thread drains (a pipe that filled up would block the native threads) and drops."""
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    seen = threading.Event()

    def drain() -> None:
        tail = b""
        while chunk := os.read(read_end, 65536):
            tail = (tail + chunk)[-4096:]
            if ALIGNMENT_WARNING in tail:
                seen.set()

    drainer = threading.Thread(target=drain, name="native-log", daemon=True)
    drainer.start()
    try:
        os.dup2(write_end, 2)
        yield
        if wait_for_first_warning and not _first_warning.is_set():
            seen.wait(FIRST_WARNING_WAIT_S)
            _first_warning.set()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
        drainer.join(1.0)
        os.close(read_end)


class FaceDetector:
    """One MediaPipe detector in VIDEO mode for one stream (MediaPipe needs strictly increasing timestamps)."""

    def __init__(
        self,
        model_path: Path | None = None,
        min_score: float = _FACES.min_score,
        mapping: BoxMapping | None = None,
        suppression: float = _FACES.suppression,
    ) -> None:
        """`suppression`: MediaPipe's non-maximum-suppression IoU; lower merges overlapping duplicates of a face.
        Defaults are the config's (`faces`); the cropper passes the run's."""
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path or face_model_path())),
            running_mode=vision.RunningMode.VIDEO,
            min_detection_confidence=min_score,
            min_suppression_threshold=suppression,
        )
        with _native_stderr_silenced(wait_for_first_warning=True):
            self._detector = vision.FaceDetector.create_from_options(options)
            # The native layer's once-per-process warning about tensor alignment comes with the first frame (a
            # little after the call returns): give it that frame here, where its output is silenced.
            blank = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
            self._detector.detect_for_video(blank, 0)
        self._mapping = mapping or _FACES.mapping()
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


# Short-range boxes (found by `CropFaceDetector` in a square crop 2.5x the face, input 256) -> the same tight
# dlib-like box the full-range box + `BoxMapping()` gives. Measured by bench/geometry.py: the short-range box against
# the full-range box on the same frontal faces (astronaut head and wider cut, Grace Hopper, each mirrored; 252
# faces, tight widths 60-250 px), composed with the full-range defaults: std 0.027 / 0.027 / 0.044 / 0.044. The
# short-range box is 0.96-0.99 of the full-range one and a little lower; it keeps its proportions at every size,
# while the full-range box shrinks on small faces (scale_w would be 0.85 at 60 px, 0.92 at 130-250 px).
SHORT_RANGE_BOX_MAPPING = FaceSettings().roi_mapping()


def square_region(box_xyxy: tuple[float, float, float, float], scale: float = 2.5) -> tuple[float, float, float, float]:
    """The square `scale` times the box's larger side, centred on the box: where to re-detect a tracked face."""
    x1, y1, x2, y2 = box_xyxy
    half = scale * max(x2 - x1, y2 - y1) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - half, cy - half, cx + half, cy + half)


class CropFaceDetector:
    """MediaPipe's short-range model (IMAGE mode) run on regions of a frame, e.g. a square 2.5x around each
    tracked face: there the face fills ~40% of the model's 128x128 input however small it is in the frame.

    Each region (x1, y1, x2, y2 in frame pixels; the parts outside the frame are black) is resized so its longer
    side is `input_size` pixels; MediaPipe scales that to the model's input. The best-scoring face in a region is
    returned in frame coordinates, mapped to the tight box with `mapping` (short-range geometry), or None.
    Not thread-safe: one instance per stream. Close it explicitly.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        min_score: float = _FACES.min_score,
        mapping: BoxMapping | None = None,
        input_size: int = 256,
    ) -> None:
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        if not 32 <= input_size <= 1024:
            raise ValueError(f"input_size must be within 32..1024, got {input_size}")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        from stream.faces.model_files import short_range_model_path

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path or short_range_model_path())),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        with _native_stderr_silenced(wait_for_first_warning=True):
            self._detector = vision.FaceDetector.create_from_options(options)
            # As in FaceDetector: the native layer's first-frame warning goes to the silenced stderr.
            blank = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
            self._detector.detect(blank)
        self._mapping = mapping or SHORT_RANGE_BOX_MAPPING
        self._input_size = input_size
        self._closed = False

    def detect_regions(
        self, image_bgr: np.ndarray, regions: Sequence[tuple[float, float, float, float]]
    ) -> list[Detection | None]:
        """Per region of one HxWx3 uint8 BGR frame, its best face (tight box in frame pixels, score) or None."""
        return [self._detect_region(image_bgr, region) for region in regions]

    def _detect_region(self, image_bgr: np.ndarray, region: tuple[float, float, float, float]) -> Detection | None:
        import mediapipe as mp

        height, width = image_bgr.shape[:2]
        x1, y1, x2, y2 = (round(float(v)) for v in region)
        region_w, region_h = x2 - x1, y2 - y1
        if region_w < 8 or region_h < 8 or x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            return None
        inner = (max(x1, 0), max(y1, 0), min(x2, width), min(y2, height))
        crop = image_bgr[inner[1] : inner[3], inner[0] : inner[2]]
        if inner != (x1, y1, x2, y2):
            top, bottom, left, right = inner[1] - y1, y2 - inner[3], inner[0] - x1, x2 - inner[2]
            crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        factor = self._input_size / max(region_w, region_h)
        size_w, size_h = max(1, round(region_w * factor)), max(1, round(region_h * factor))
        resized = cv2.resize(crop, (size_w, size_h), interpolation=cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(resized, cv2.COLOR_BGR2RGB))
        result = self._detector.detect(image)

        def score_of(found: object) -> float:
            return found.categories[0].score if found.categories else 0.0

        best = max(result.detections, key=score_of, default=None)
        if best is None:
            return None
        box = best.bounding_box
        to_frame_x, to_frame_y = region_w / size_w, region_h / size_h
        mapped = self._mapping.apply(
            x1 + box.origin_x * to_frame_x,
            y1 + box.origin_y * to_frame_y,
            box.width * to_frame_x,
            box.height * to_frame_y,
        )
        return Detection(box_xyxy=mapped, score=float(score_of(best)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with _native_stderr_silenced():
                self._detector.close()

    def __enter__(self) -> CropFaceDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
