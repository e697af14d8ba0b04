"""Finding and keeping faces in one stream the way MediaPipe's own face pipelines keep small faces: every track is
re-detected in its own crop each frame, one scan per frame looks for new faces (the whole frame every
`scan_period` frames, else the next tile, round-robin), a detection overlapping a live track never starts another,
and a new track stays hidden until its crop re-detections confirm it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stream.config import FaceSettings, TrackingSettings
from stream.faces.tracker import TrackMotion, iou_matrix
from stream.records import Box, Detection, Track


class FrameFaces(Protocol):
    """Finds faces in a whole image (a frame or a tile of it)."""

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]: ...

    def close(self) -> None: ...


class RegionFaces(Protocol):
    """Finds the best face in each given region of a frame (None where there is none)."""

    def detect_regions(self, image_bgr: np.ndarray, regions: Sequence[Box]) -> list[Detection | None]: ...

    def close(self) -> None: ...


class RegionsByCropping:
    """`RegionFaces` from a whole-image detector: each region cut out and searched on its own; the best-scoring
    face in it, in frame coordinates. With MediaPipe's full-range model the boxes keep the full-frame geometry."""

    def __init__(self, detector: FrameFaces) -> None:
        self._detector = detector

    def detect_regions(self, image_bgr: np.ndarray, regions: Sequence[Box]) -> list[Detection | None]:
        found: list[Detection | None] = []
        for region in regions:
            x1, y1, x2, y2 = (round(v) for v in region)
            if x2 - x1 < 8 or y2 - y1 < 8:
                found.append(None)
                continue
            faces = self._detector.detect(np.ascontiguousarray(image_bgr[y1:y2, x1:x2]), 0)
            best = max(faces, key=lambda d: d.score, default=None)
            found.append(
                None
                if best is None
                else Detection(
                    (best.box_xyxy[0] + x1, best.box_xyxy[1] + y1, best.box_xyxy[2] + x1, best.box_xyxy[3] + y1),
                    best.score,
                )
            )
        return found

    def close(self) -> None:
        self._detector.close()


def square_around(box: Box, scale: float, width: int, height: int) -> Box:
    """A square `scale` times the box's larger side, centred on it, kept inside the frame where it fits."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = min(scale * max(box[2] - box[0], box[3] - box[1]), float(max(width, height)))
    x1 = min(max(cx - side / 2, 0.0), max(width - side, 0.0))
    y1 = min(max(cy - side / 2, 0.0), max(height - side, 0.0))
    return (x1, y1, min(x1 + side, float(width)), min(y1 + side, float(height)))


def scan_tiles(width: int, height: int, tile: int, overlap: float = 0.2) -> list[Box]:
    """Tiles of `tile` pixels covering the frame with `overlap` between neighbours; one tile for small frames."""
    if width <= tile and height <= tile:
        return [(0.0, 0.0, float(width), float(height))]

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        step = int(tile * (1 - overlap))
        points = list(range(0, length - tile, step))
        return [*points, length - tile]

    return [(float(x), float(y), float(x + tile), float(y + tile)) for y in starts(height) for x in starts(width)]


@dataclass
class _Candidate:
    """A track: hidden (`track_id` None) until confirmed."""

    motion: TrackMotion
    created: int
    track_id: int | None = None
    streak: int = 0  # consecutive confident re-detections while hidden
    matched_now: bool = False


@dataclass
class FaceFinder:
    """Stable, confirmed face tracks for one stream; call `update(image, frame_index)` once per processed frame."""

    stream_id: str
    scanner: FrameFaces
    regions: RegionFaces
    faces: FaceSettings = field(default_factory=FaceSettings)  # roi_scale, scan_*, birth_iou, confirm_*
    tracking: TrackingSettings = field(default_factory=TrackingSettings)  # max_missed_frames
    first_id: int = 1

    def __post_init__(self) -> None:
        self._candidates: list[_Candidate] = []
        self._next_id = self.first_id
        self._evicted: list[int] = []
        self._frames_seen = 0
        self._tile_turn = itertools.count()
        self._last_frame: int | None = None

    @property
    def next_id(self) -> int:
        return self._next_id

    def update(self, image_bgr: np.ndarray, frame_index: int, timestamp_ms: int) -> list[Track]:
        """This frame's confirmed tracks that were found in it, by track id."""
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frame_index must increase: got {frame_index} after {self._last_frame}")
        previous, self._last_frame = self._last_frame, frame_index
        height, width = image_bgr.shape[:2]
        self._drop_lost(frame_index, previous)
        for candidate in self._candidates:
            candidate.matched_now = False

        # 1. Every track, re-detected in its own crop around where it should be now.
        predicted = [c.motion.predict(frame_index) for c in self._candidates]
        rois = [square_around(tuple(p), self.faces.roi_scale, width, height) for p in predicted]  # type: ignore[arg-type]
        found = self.regions.detect_regions(image_bgr, rois) if rois else []
        for candidate, detection in zip(self._candidates, found, strict=True):
            if detection is not None:
                self._match(candidate, detection, frame_index)

        # 2. One scan for new faces; a scan hit may also rescue a track its crop missed.
        scanned = self._scan(image_bgr, timestamp_ms)
        self._place(scanned, frame_index)

        self._frames_seen += 1
        shown = [c for c in self._candidates if c.track_id is not None and c.matched_now]
        return [self._record(c, frame_index) for c in sorted(shown, key=lambda c: c.track_id or 0)]

    def _match(self, candidate: _Candidate, detection: Detection, frame_index: int) -> None:
        candidate.motion.match(detection.box_xyxy, frame_index)
        candidate.matched_now = True
        if candidate.track_id is None:
            confident = detection.score >= self.faces.confirm_score
            candidate.streak = candidate.streak + 1 if confident else 0
            if candidate.streak >= self.faces.confirm_frames:
                candidate.track_id = self._next_id
                self._next_id += 1

    def _scan(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        """The whole frame every `scan_period` frames; between those, the next tile of a large frame."""
        height, width = image_bgr.shape[:2]
        if self._frames_seen % self.faces.scan_period == 0:
            return self.scanner.detect(image_bgr, timestamp_ms)
        tiles = scan_tiles(width, height, self.faces.scan_tile)
        if len(tiles) == 1:
            return []
        x1, y1, x2, y2 = (int(v) for v in tiles[next(self._tile_turn) % len(tiles)])
        found = self.scanner.detect(np.ascontiguousarray(image_bgr[y1:y2, x1:x2]), timestamp_ms)
        return [
            Detection((d.box_xyxy[0] + x1, d.box_xyxy[1] + y1, d.box_xyxy[2] + x1, d.box_xyxy[3] + y1), d.score)
            for d in found
        ]

    def _place(self, scanned: list[Detection], frame_index: int) -> None:
        """A scan detection on a live track is that track (rescuing it when its crop missed); elsewhere it is
        born as a hidden candidate."""
        if not scanned:
            return
        boxes = np.array([d.box_xyxy for d in scanned], dtype=np.float64).reshape(-1, 4)
        if self._candidates:
            current = np.stack([c.motion.predict(frame_index) for c in self._candidates])
            overlap = iou_matrix(current, boxes)
        else:
            overlap = np.zeros((0, len(scanned)))
        for col, detection in enumerate(scanned):
            rows = overlap[:, col] if len(overlap) else np.zeros(0)
            if len(rows) and rows.max() > self.faces.birth_iou:
                best = self._candidates[int(rows.argmax())]
                if not best.matched_now:
                    self._match(best, detection, frame_index)
                continue
            self._candidates.append(_Candidate(TrackMotion(detection.box_xyxy, frame_index), frame_index))

    def _drop_lost(self, frame_index: int, previous: int | None) -> None:
        kept = []
        for candidate in self._candidates:
            missed = frame_index - candidate.motion.last_seen - 1
            if candidate.track_id is None and previous is not None and candidate.motion.last_seen < previous:
                # A hidden candidate must be re-detected in every processed frame until confirmed (frames the loop
                # thinned or dropped under load were never looked at: they are not misses).
                continue
            if missed > self.tracking.max_missed_frames:
                if candidate.track_id is not None:
                    self._evicted.append(candidate.track_id)
                continue
            kept.append(candidate)
        self._candidates = kept

    def take_evicted(self) -> list[int]:
        evicted, self._evicted = self._evicted, []
        return evicted

    def evict_all(self) -> list[int]:
        self._evicted.extend(sorted(c.track_id for c in self._candidates if c.track_id is not None))
        self._candidates = []
        return self.take_evicted()

    def live_ids(self) -> list[int]:
        return sorted(c.track_id for c in self._candidates if c.track_id is not None)

    def _record(self, candidate: _Candidate, frame_index: int) -> Track:
        x1, y1, x2, y2 = (float(v) for v in candidate.motion.box)
        assert candidate.track_id is not None
        return Track(
            self.stream_id,
            candidate.track_id,
            (x1, y1, x2, y2),
            frame_index - candidate.created,
            candidate.motion.last_seen,
        )

    def close(self) -> None:
        self.scanner.close()
        self.regions.close()
