"""Per-stream face tracking: stable track ids from per-frame detections (IoU + constant-velocity prediction,
Hungarian assignment) and eviction of tracks that have been gone too long."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from stream.records import Box, Detection, Track

_MIN_SIDE = 1.0  # a predicted box never shrinks below one pixel


class TrackMotion:
    """Where one track's face is and how it moves: its last matched box and a smoothed constant velocity. Mutable,
    owned by one tracker on the loop thread (never crosses a thread)."""

    def __init__(self, box: Box, frame_index: int, track_id: int = 0) -> None:
        self.track_id = track_id
        self.created = frame_index
        self.box = np.asarray(box, dtype=np.float64)
        self.last_seen = frame_index
        self.velocity: np.ndarray | None = None  # centre and size change per frame, smoothed over matches

    def predict(self, frame_index: int) -> np.ndarray:
        """Constant velocity of centre and size, over the gap since the last match."""
        if self.velocity is None:
            return self.box
        predicted = _to_cxcywh(self.box) + self.velocity * (frame_index - self.last_seen)
        predicted[2:] = np.maximum(predicted[2:], _MIN_SIDE)
        return _to_xyxy(predicted)

    def match(self, box: Box, frame_index: int) -> None:
        new_box = np.asarray(box, dtype=np.float64)
        observed = (_to_cxcywh(new_box) - _to_cxcywh(self.box)) / (frame_index - self.last_seen)
        # Half-and-half smoothing: one jittery or jumpy detection must not throw the next prediction far off.
        self.velocity = observed if self.velocity is None else (self.velocity + observed) / 2
        self.box, self.last_seen = new_box, frame_index


def _to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])


def _to_xyxy(c: np.ndarray) -> np.ndarray:
    return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2])


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in `boxes_a` [N, 4] with every one in `boxes_b` [M, 4] -> [N, M]."""
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class Tracker:
    """Stable face ids for one stream. Ids start at `first_id` and are never reused; call `update` once per processed
    frame."""

    def __init__(self, stream_id: str, iou_threshold: float = 0.3, max_missed: int = 15, first_id: int = 1) -> None:
        if not stream_id:
            raise ValueError("stream_id must be a non-empty string")
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        if isinstance(max_missed, bool) or not isinstance(max_missed, int) or max_missed < 0:
            raise ValueError(f"max_missed must be an int >= 0 (frames a track may go unmatched), got {max_missed!r}")
        self.stream_id = stream_id
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: dict[int, TrackMotion] = {}
        self._next_id = first_id
        self._evicted: list[int] = []
        self._last_frame: int | None = None

    def update(self, detections: Sequence[Detection], frame_index: int) -> list[Track]:
        """Match this frame's detections to live tracks; return the tracks matched or created here, by track_id."""
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frame_index must increase: got {frame_index} after {self._last_frame}")
        self._last_frame = frame_index
        # Evict first, so a face back after more than max_missed frames gets a new id in this very frame. The
        # frames a track has missed are those strictly between its last match and this frame.
        for track_id, state in list(self._tracks.items()):
            if frame_index - state.last_seen - 1 > self.max_missed:
                del self._tracks[track_id]
                self._evicted.append(track_id)

        states = list(self._tracks.values())
        boxes = np.array([d.box_xyxy for d in detections], dtype=np.float64).reshape(-1, 4)
        matched_dets: set[int] = set()
        touched: list[TrackMotion] = []
        if states and len(boxes):
            predicted = np.stack([s.predict(frame_index) for s in states])
            # The better of the predicted and the last seen box: a face that stops or turns is still matched.
            iou = np.maximum(iou_matrix(predicted, boxes), iou_matrix(np.stack([s.box for s in states]), boxes))
            for row, col in zip(*linear_sum_assignment(1.0 - iou), strict=True):
                if iou[row, col] >= self.iou_threshold:
                    states[row].match(detections[col].box_xyxy, frame_index)
                    matched_dets.add(int(col))
                    touched.append(states[row])
        for col, detection in enumerate(detections):
            if col not in matched_dets:
                state = TrackMotion(detection.box_xyxy, frame_index, self._next_id)
                self._tracks[state.track_id] = state
                self._next_id += 1
                touched.append(state)
        return [self._record(s, frame_index) for s in sorted(touched, key=lambda s: s.track_id)]

    def take_evicted(self) -> list[int]:
        """Ids evicted since the last call (oldest eviction first), so their rings can be dropped."""
        evicted, self._evicted = self._evicted, []
        return evicted

    @property
    def next_id(self) -> int:
        """The id the next new track gets (a stream added again continues from here, so ids are never reused)."""
        return self._next_id

    def live_ids(self) -> list[int]:
        return sorted(self._tracks)

    def evict_all(self) -> list[int]:
        """End of stream: evict every live track. Returns those ids plus any evicted ones not yet taken."""
        self._evicted.extend(sorted(self._tracks))
        self._tracks.clear()
        return self.take_evicted()

    def _record(self, state: TrackMotion, frame_index: int) -> Track:
        x1, y1, x2, y2 = (float(v) for v in state.box)
        return Track(self.stream_id, state.track_id, (x1, y1, x2, y2), frame_index - state.created, state.last_seen)
