"""The bounded buffer between a capture thread and the loop: live keeps the newest frames and drops the oldest;
a file waits for the loop."""

from __future__ import annotations

import threading
from collections import deque

from stream.records import Frame


class FrameBuffer:
    """A bounded frame queue. Live: a full buffer drops its oldest frame and the reader takes the newest;
    file: a full buffer makes the writer wait and the reader takes frames in order."""

    def __init__(self, capacity: int, live: bool) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        self._frames: deque[Frame] = deque()
        self._capacity = capacity
        self._live = live
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._ready:
            if self._live:
                while len(self._frames) >= self._capacity:
                    self._frames.popleft()
                    self.dropped += 1
            else:
                while len(self._frames) >= self._capacity and not stop.is_set():
                    self._ready.wait(0.1)
            self._frames.append(frame)
            self._ready.notify_all()

    def take(self, wait_s: float = 0.0) -> Frame | None:
        """The next frame to process, or None when none is waiting (after waiting up to `wait_s` for one)."""
        with self._ready:
            if not self._frames and wait_s > 0 and not self._closed:
                self._ready.wait(wait_s)
            if not self._frames:
                return None
            if self._live:
                self.dropped += len(self._frames) - 1
                newest = self._frames.pop()
                self._frames.clear()
                frame = newest
            else:
                frame = self._frames.popleft()
            self._ready.notify_all()
            return frame

    def count_dropped(self, frames: int) -> None:
        """Frames a live producer dropped before they reached this buffer count as its drops."""
        with self._ready:
            self.dropped += frames

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def exhausted(self) -> bool:
        """Closed by the writer and fully read."""
        with self._ready:
            return self._closed and not self._frames

    def __len__(self) -> int:
        with self._ready:
            return len(self._frames)
