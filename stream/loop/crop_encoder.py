"""Crops in, cached per-frame model outputs out: batches crops of every face of every stream into engine calls of
at most `max_batch`, and scores many faces' windows in one call. Measures what a call costs (preprocessing and
the engine), so the loop can plan how many crops fit in what is left of an iteration (stream/overload.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from model.engines import Engine
from model.network import FrameOutputs, WindowMode
from model.preprocess import Preprocessing, normalise, resize_crop
from stream.loop.rings import RingWindow
from stream.timing import StageTimer

COST_MEMORY = 0.9  # weight left to older encode calls each time one more is measured


class EncodeCost:
    """Seconds one engine call of n crops takes, preprocessing included: a + b*n, fitted to the recent calls by
    exponentially weighted least squares. An engine's fixed cost per call (often as much as several crops at batch
    1 on a CPU) is then not charged to every crop, so a budget neither overruns on small batches nor gives up
    crops that a larger batch would fit."""

    def __init__(self) -> None:
        self._sums = np.zeros(5)  # weights, n, n^2, seconds, n*seconds

    def add(self, crops: int, seconds: float) -> None:
        self._sums = self._sums * COST_MEMORY + np.array([1.0, crops, crops * crops, seconds, crops * seconds])

    def seconds(self, crops: int) -> float | None:
        """The predicted time of one call of `crops` crops; None before any call was measured."""
        weight, n, nn, t, nt = self._sums
        if weight == 0:
            return None
        spread = weight * nn - n * n
        slope = (weight * nt - n * t) / spread if spread > 1e-6 * weight * weight else 0.0
        fixed = (t - slope * n) / weight
        if slope <= 0 or fixed < 0:  # one batch size so far, or noise: time proportional to the crops
            return crops * t / n
        return fixed + slope * crops


class CropEncoder:
    def __init__(self, engine: Engine, preprocessing: Preprocessing, max_batch: int, timer: StageTimer) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._engine = engine
        self._preprocessing = preprocessing
        self._max_batch = max_batch
        self._timer = timer
        self._cost = EncodeCost()

    def seconds_for(self, crops: int) -> float | None:
        """The predicted wall time of `encode` on `crops` crops (in calls of at most `max_batch`), from the recent
        calls; None before the first."""
        calls, rest = divmod(crops, self._max_batch)
        full = self._cost.seconds(self._max_batch) if calls else 0.0
        part = self._cost.seconds(rest) if rest else 0.0
        if full is None or part is None:
            return None
        return calls * full + part

    def resized(self, image_bgr: np.ndarray) -> torch.Tensor:
        """A crop resized for the model ([3, S, S] uint8 on the CPU), to pass to `encode` in its place: a thread
        that finds faces ahead does this while the encoder works. Only for an engine on the CPU."""
        return resize_crop(image_bgr, self._preprocessing.input_size, "cpu")

    def encode(self, images_bgr: Sequence[np.ndarray | torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
        """Features [N, D] and logits [N, 2] (None for architectures without per-frame logits), in input order.
        Each image is a crop (HxWx3 uint8 BGR) or the same crop already `resized`."""
        features, logits = [], []
        for start in range(0, len(images_bgr), self._max_batch):
            chunk = images_bgr[start : start + self._max_batch]
            began = time.perf_counter()
            size, device = self._preprocessing.input_size, self._engine.device
            # As model.preprocess.crops_to_batch, with the crops resized ahead taken as they are.
            resized = [c if isinstance(c, torch.Tensor) else resize_crop(c, size, device) for c in chunk]
            batch = normalise(torch.stack(resized), self._preprocessing)
            mid = time.perf_counter()
            outputs = self._engine.encode(batch)
            self._timer.record("preprocess", mid - began)
            done = time.perf_counter()
            self._timer.record("encode", done - mid)
            self._cost.add(len(chunk), done - began)
            features.append(outputs.features.numpy())
            if outputs.logits is not None:
                logits.append(outputs.logits.numpy())
        return np.concatenate(features), np.concatenate(logits) if logits else None

    def score(self, windows: Sequence[RingWindow], mode: WindowMode) -> list[float]:
        """p_fake of each face's window, in one engine call (windows never mix: each is its own row)."""
        began = time.perf_counter()
        stacked = FrameOutputs(
            features=torch.from_numpy(np.stack([w.features for w in windows])),
            logits=None if windows[0].logits is None else torch.from_numpy(np.stack([w.logits for w in windows])),
        )
        p_fakes = self._engine.score(stacked, mode).tolist()
        self._timer.record("score", time.perf_counter() - began)
        return [float(p) for p in p_fakes]
