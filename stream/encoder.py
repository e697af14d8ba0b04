"""Crops in, cached per-frame model outputs out: batches crops of every face of every stream into engine calls of
at most `max_batch`, and scores many faces' windows in one call."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from model.engine import Engine
from model.network import FrameOutputs, WindowMode
from model.preprocess import Preprocessing, crops_to_batch
from stream.health import StageTimer
from stream.rings import RingWindow


class CropEncoder:
    def __init__(self, engine: Engine, preprocessing: Preprocessing, max_batch: int, timer: StageTimer) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._engine = engine
        self._preprocessing = preprocessing
        self._max_batch = max_batch
        self._timer = timer

    def encode(self, images_bgr: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Features [N, D] and logits [N, 2] (None for architectures without per-frame logits), in input order."""
        features, logits = [], []
        for start in range(0, len(images_bgr), self._max_batch):
            chunk = images_bgr[start : start + self._max_batch]
            began = time.perf_counter()
            batch = crops_to_batch(list(chunk), self._preprocessing, self._engine.device)
            mid = time.perf_counter()
            outputs = self._engine.encode(batch)
            self._timer.record("preprocess", mid - began)
            self._timer.record("encode", time.perf_counter() - mid)
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
