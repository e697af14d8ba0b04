"""Stream health and stage timings: what the pipeline measures about itself, for the store and the status line."""

from __future__ import annotations

import threading
import time
from collections import deque

from stream.records import StageTiming


class FpsMeter:
    """Events per second over the last `window_s` seconds, from a deque of monotonic timestamps.

    The rate is the events within the window over the window's length (the meter's age while it is younger),
    never over the gap between two stamps: two events microseconds apart are not thousands per second. Below
    `min_span_s` of age the divisor is `min_span_s`, so a first reading is low rather than absurd; once events
    stop, the rate falls to 0 within one window.
    """

    def __init__(self, window_s: float = 2.0, min_span_s: float = 0.5) -> None:
        self._window_s = window_s
        self._min_span_s = min(min_span_s, window_s)
        self._first: float | None = None  # the first event: where the meter's age starts, not itself counted
        self._stamps: deque[float] = deque()

    @property
    def window_s(self) -> float:
        return self._window_s

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._first is None:
            self._first = now
        else:
            self._stamps.append(now)
        self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if self._first is None:
            return 0.0
        self._trim(now)
        span = min(self._window_s, now - self._first)
        return len(self._stamps) / max(span, self._min_span_s)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] >= self._window_s:
            self._stamps.popleft()


def span_rate(events: int, start: float | None, end: float | None) -> float:
    """Events per second from `start` to `end` (monotonic seconds); 0.0 when there is no span to divide by."""
    if start is None or end is None or end <= start:
        return 0.0
    return events / (end - start)


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
