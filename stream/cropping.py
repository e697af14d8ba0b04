"""Detect → track → crop for one stream: the unit the live loop and the trainer's data preparation share, so both
cut faces the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from model.preprocess import crop_face
from stream.faces import FaceDetector
from stream.health import StageTimer
from stream.sources import Frame
from stream.tracking import Track, Tracker


@dataclass(frozen=True)
class FaceCrop:
    """One tracked face cut out of one frame (BGR, the tight box; resized later by the model's preprocessing)."""

    frame: Frame
    track: Track
    image_bgr: np.ndarray


class FaceCropper:
    """One stream's face detector and tracker; `crops(frame)` gives the frame's tracked faces, cut out."""

    def __init__(self, detector: FaceDetector, tracker: Tracker, timer: StageTimer | None = None) -> None:
        self._detector = detector
        self._tracker = tracker
        self._timer = timer or StageTimer()
        self._clock_origin = time.monotonic()
        self.last_tracks: list[Track] = []

    def crops(self, frame: Frame) -> list[FaceCrop]:
        began = time.perf_counter()
        # MediaPipe's VIDEO mode needs increasing timestamps; RTSP pts can be missing, so use our own clock.
        timestamp_ms = int((time.monotonic() - self._clock_origin) * 1000)
        detections = self._detector.detect(frame.image_bgr, timestamp_ms)
        mid = time.perf_counter()
        tracks = self._tracker.update(detections, frame.index)
        self._timer.record("detect", mid - began)
        self._timer.record("track", time.perf_counter() - mid)
        self.last_tracks = tracks
        crops = []
        for track in tracks:
            image = crop_face(frame.image_bgr, track.box)
            if image is not None:  # never feed the whole frame when a box falls outside it
                crops.append(FaceCrop(frame, track, image))
        return crops

    @property
    def next_track_id(self) -> int:
        return self._tracker.next_id

    def take_evicted(self) -> list[int]:
        """Track ids the tracker gave up on since the last call."""
        return self._tracker.take_evicted()

    def evict_all(self) -> list[int]:
        """End of stream: every track is gone."""
        self.last_tracks = []
        return self._tracker.evict_all()

    def close(self) -> None:
        self._detector.close()
