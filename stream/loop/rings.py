"""Fixed-capacity per-face rings of cached per-frame model outputs (features, logits) and small uint8 crops,
so a window score never recomputes a crop."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from stream.config import LoopSettings

MAX_CAPACITY = 1000


@dataclass(frozen=True, eq=False)
class RingWindow:
    """The newest n entries of one ring, oldest -> newest, as copies (safe to hand to another thread)."""

    features: np.ndarray  # float32 [n, D]
    logits: np.ndarray | None  # float32 [n, 2], None when the ring keeps no logits
    frame_indices: np.ndarray  # int64 [n]
    t_media: np.ndarray  # float64 [n], NaN where the source had no media time
    t_capture: np.ndarray  # float64 [n]

    def __len__(self) -> int:
        return len(self.frame_indices)


THUMB_SIZE = LoopSettings().thumb_size  # the config's default, not one of the ring's own


def _check_ring_args(capacity: int, feature_dim: int, thumb_size: int) -> None:
    for name, value, high in (("capacity", capacity, MAX_CAPACITY), ("feature_dim", feature_dim, 65536)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ValueError(f"{name} must be an int in 1..{high}, got {value!r}")
    if isinstance(thumb_size, bool) or not isinstance(thumb_size, int) or not 8 <= thumb_size <= 512:
        raise ValueError(f"thumb_size must be an int in 8..512 (pixels per side), got {thumb_size!r}")


class FaceRing:
    """One face's last `capacity` scored frames, in preallocated arrays overwritten oldest-first.

    Memory is fixed at construction and bounded by capacity: capacity × (4·feature_dim + 8 if has_logits
    + 3·thumb_size² + 24) bytes, e.g. 20 × (8192 + 8 + 12288 + 24) ≈ 410 KB for a 2048-d face at window 20.
    """

    def __init__(self, capacity: int, feature_dim: int, has_logits: bool, thumb_size: int = THUMB_SIZE) -> None:
        _check_ring_args(capacity, feature_dim, thumb_size)
        self.capacity, self.feature_dim, self.has_logits, self.thumb_size = (
            capacity,
            feature_dim,
            has_logits,
            thumb_size,
        )
        self._features = np.zeros((capacity, feature_dim), np.float32)
        self._logits = np.zeros((capacity, 2), np.float32) if has_logits else None
        self._thumbs = np.zeros((capacity, thumb_size, thumb_size, 3), np.uint8)
        self._frame_index = np.zeros(capacity, np.int64)
        self._t_media = np.full(capacity, math.nan, np.float64)
        self._t_capture = np.zeros(capacity, np.float64)
        self._next = 0  # slot the next push writes
        self._count = 0
        self._pushed_total = 0

    def push(
        self,
        features: np.ndarray,
        logits: np.ndarray | None,
        crop_bgr: np.ndarray,
        frame_index: int,
        t_media: float | None,
        t_capture: float,
    ) -> None:
        """Append one scored frame, overwriting the oldest when full. `crop_bgr`: HxWx3 uint8, kept as a thumbnail."""
        features = np.asarray(features)
        if features.shape != (self.feature_dim,):
            raise ValueError(f"features must have shape ({self.feature_dim},), got {features.shape}")
        if self.has_logits:
            if logits is None or np.shape(logits) != (2,):
                raise ValueError(
                    f"this ring keeps logits: expected shape (2,), got {None if logits is None else np.shape(logits)}"
                )
        elif logits is not None:
            raise ValueError("this ring was made with has_logits=False: pass logits=None")
        if crop_bgr.dtype != np.uint8 or crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or 0 in crop_bgr.shape:
            raise ValueError(
                f"crop_bgr must be a non-empty HxWx3 uint8 BGR image, got {crop_bgr.dtype} {crop_bgr.shape}"
            )
        slot = self._next
        self._features[slot] = features
        if self._logits is not None:
            self._logits[slot] = logits
        size = (self.thumb_size, self.thumb_size)
        self._thumbs[slot] = cv2.resize(crop_bgr, size, interpolation=cv2.INTER_AREA)
        self._frame_index[slot] = frame_index
        self._t_media[slot] = math.nan if t_media is None else t_media
        self._t_capture[slot] = t_capture
        self._next = (slot + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)
        self._pushed_total += 1

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count == self.capacity

    @property
    def pushed_total(self) -> int:
        """Frames pushed since creation (not capped by capacity): the pipeline's stride counter."""
        return self._pushed_total

    def _order(self, n: int | None) -> np.ndarray:
        """Slots of the newest min(n, len) entries, oldest -> newest."""
        if self._count == 0:
            raise ValueError("the ring is empty: push a frame first")
        if n is None:
            n = self._count
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.capacity:
            raise ValueError(f"n must be an int in 1..{self.capacity} (the ring's capacity), got {n!r}")
        n = min(n, self._count)
        return (self._next - n + np.arange(n)) % self.capacity

    def window(self, n: int | None = None) -> RingWindow:
        """The newest n entries (all when None; fewer when fewer have been pushed), oldest -> newest, copied."""
        slots = self._order(n)
        return RingWindow(
            features=self._features[slots],
            logits=None if self._logits is None else self._logits[slots],
            frame_indices=self._frame_index[slots],
            t_media=self._t_media[slots],
            t_capture=self._t_capture[slots],
        )

    def thumbnails(self) -> np.ndarray:
        """uint8 [len, thumb, thumb, 3] BGR, oldest -> newest (empty when nothing was pushed)."""
        if self._count == 0:
            return self._thumbs[:0].copy()
        return self._thumbs[self._order(None)]

    def latest_thumbnail(self) -> np.ndarray:
        return self._thumbs[self._order(1)[0]].copy()

    @property
    def nbytes(self) -> int:
        arrays = [self._features, self._thumbs, self._frame_index, self._t_media, self._t_capture]
        return sum(a.nbytes for a in arrays) + (0 if self._logits is None else self._logits.nbytes)
