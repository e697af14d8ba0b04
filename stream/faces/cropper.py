"""Detect → track → crop for one stream: the unit the live loop and the trainer's data preparation share, so both
cut faces the same way. Two ways of finding faces sit behind it (`faces.mode`): `roi` (stream/finding.py: each
track re-detected in its own crop, a round-robin scan for new faces, new tracks confirmed) and `full_frame` (one
detector pass over the whole frame, IoU tracking)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model.preprocess import crop_face
from stream.faces.mediapipe_detectors import CropFaceDetector, FaceDetector
from stream.faces.roi_finder import FaceFinder, RegionFaces, RegionsByCropping
from stream.faces.tracker import Tracker
from stream.records import Frame, Track
from stream.timing import StageTimer

if TYPE_CHECKING:
    from stream.config import FaceSettings, Settings

# How the boxes the model's crops are cut from were made; stored with every session (and, later, with prepared
# training data, which must be cut the same way). Bump when a mode's boxes change.
CROP_GEOMETRIES = {
    ("full_frame", "full_range"): 1,  # full-range boxes on the whole frame, mapped by faces.box_*
    ("full_frame", "short_range"): 1,
    ("roi", "full_range"): 2,  # full-range boxes re-detected in 2.5x crops, mapped by faces.box_*
    ("roi", "short_range"): 3,  # short-range boxes in crops, mapped by SHORT_RANGE_BOX_MAPPING (median IoU 0.93
    # with version 1's boxes on the same faces)
}


def crop_geometry(faces: FaceSettings) -> int:
    return CROP_GEOMETRIES[(faces.mode, faces.roi_model)]


@dataclass(frozen=True)
class FaceCrop:
    """One tracked face cut out of one frame (BGR, the tight box; resized later by the model's preprocessing)."""

    frame: Frame
    track: Track
    image_bgr: np.ndarray


class TrackSource(Protocol):
    """Finds and tracks one stream's faces: this frame's tracks that were seen in it."""

    @property
    def next_id(self) -> int: ...

    def update(self, image_bgr: np.ndarray, frame_index: int, timestamp_ms: int) -> list[Track]: ...

    def take_evicted(self) -> list[int]: ...

    def evict_all(self) -> list[int]: ...

    def close(self) -> None: ...


class FullFrameTracks:
    """The detector over the whole frame, then IoU tracking."""

    def __init__(self, detector: FaceDetector, tracker: Tracker) -> None:
        self._detector = detector
        self._tracker = tracker

    @property
    def next_id(self) -> int:
        return self._tracker.next_id

    def update(self, image_bgr: np.ndarray, frame_index: int, timestamp_ms: int) -> list[Track]:
        return self._tracker.update(self._detector.detect(image_bgr, timestamp_ms), frame_index)

    def take_evicted(self) -> list[int]:
        return self._tracker.take_evicted()

    def evict_all(self) -> list[int]:
        return self._tracker.evict_all()

    def close(self) -> None:
        self._detector.close()


class FaceCropper:
    """One stream's face finding and tracking; `crops(frame)` gives the frame's tracked faces, cut out."""

    def __init__(self, tracks: TrackSource, timer: StageTimer | None = None) -> None:
        self._tracks = tracks
        self._timer = timer or StageTimer()
        self._clock_origin = time.monotonic()
        self.last_tracks: list[Track] = []

    def crops(self, frame: Frame) -> list[FaceCrop]:
        began = time.perf_counter()
        # MediaPipe's VIDEO mode needs increasing timestamps; RTSP pts can be missing, so use our own clock.
        timestamp_ms = int((time.monotonic() - self._clock_origin) * 1000)
        tracks = self._tracks.update(frame.image_bgr, frame.index, timestamp_ms)
        self._timer.record("detect", time.perf_counter() - began)
        self.last_tracks = tracks
        crops = []
        for track in tracks:
            image = crop_face(frame.image_bgr, track.box)
            if image is not None:  # never feed the whole frame when a box falls outside it
                crops.append(FaceCrop(frame, track, image))
        return crops

    @property
    def next_track_id(self) -> int:
        return self._tracks.next_id

    def take_evicted(self) -> list[int]:
        """Track ids given up on since the last call."""
        return self._tracks.take_evicted()

    def evict_all(self) -> list[int]:
        """End of stream: every track is gone."""
        self.last_tracks = []
        return self._tracks.evict_all()

    def close(self) -> None:
        self._tracks.close()


def build_cropper(
    stream_id: str,
    settings: Settings,
    timer: StageTimer | None = None,
    detector_factory: Callable[[], FaceDetector] | None = None,
    first_track_id: int = 1,
) -> FaceCropper:
    """The detect → track → crop unit for one stream, as `settings.faces.mode` says. `detector_factory` replaces
    MediaPipe (tests); `first_track_id`: where the stream's ids start (a stream added again continues its ids)."""
    faces, tracking = settings.faces, settings.tracking

    def frame_detector() -> FaceDetector:
        if detector_factory is not None:
            return detector_factory()
        return FaceDetector(min_score=faces.min_score, mapping=faces.mapping(), suppression=faces.suppression)

    def region_detector() -> RegionFaces:
        if faces.roi_model == "short_range" and detector_factory is None:
            return CropFaceDetector(min_score=faces.min_score, mapping=faces.roi_mapping())
        return RegionsByCropping(frame_detector())

    if faces.mode == "full_frame":
        tracker = Tracker(stream_id, tracking.iou_threshold, tracking.max_missed_frames, first_track_id)
        return FaceCropper(FullFrameTracks(frame_detector(), tracker), timer)
    finder = FaceFinder(
        stream_id,
        scanner=frame_detector(),
        regions=region_detector(),
        faces=faces,
        tracking=tracking,
        first_id=first_track_id,
    )
    return FaceCropper(finder, timer)
