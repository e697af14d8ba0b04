"""Stream health and stage timings: what the pipeline measures about itself, for the store and the status line."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class StreamState(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class StreamHealth:
    stream_id: str
    state: StreamState
    fps_in: float
    fps_scored: float
    frames_dropped: int
    reconnects: int
    last_error: str | None


class FpsMeter:
    """Events per second over the last `window_s` seconds, from a deque of monotonic timestamps."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._stamps: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._stamps.append(now)
        self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._stamps) < 2:
            return 0.0
        return (len(self._stamps) - 1) / max(self._stamps[-1] - self._stamps[0], 1e-6)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self._window_s:
            self._stamps.popleft()


@dataclass(frozen=True)
class StageTiming:
    stage: str
    p50_ms: float
    p95_ms: float
    count: int


class StageTimer:
    """Wall time per pipeline stage over the last `keep` samples, reported as p50/p95 in milliseconds."""

    def __init__(self, keep: int = 1000) -> None:
        self._keep = keep
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # capture threads record "decode" while the pipeline reads

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._keep)).append(seconds)

    def timings(self) -> list[StageTiming]:
        with self._lock:
            snapshot = {stage: sorted(samples) for stage, samples in self._samples.items()}
        result = []
        for stage, ordered in snapshot.items():
            p50 = ordered[len(ordered) // 2]
            p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            result.append(StageTiming(stage, p50 * 1e3, p95 * 1e3, len(ordered)))
        return result
