"""The WebRTC frames bridge: frames a WHIP publisher sends on the asyncio loop cross to the capture thread through a
small drop-oldest handoff, with their media time from RTP timestamps (wrap-around included)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

import av

from stream.capture.references import SourceEnded
from stream.capture.sources import Producer
from stream.records import DecodedFrame

HANDOFF_FRAMES = 2


TAKE_WAIT_S = 0.25  # how often a waiting capture thread looks whether its stream was stopped


RTP_WRAP = 1 << 32


class LatestFrames:
    """The newest video frames of one publisher, from the asyncio loop (`put`, never blocks: a full handoff drops
    its oldest frame and counts it) to the stream's capture thread (`take`, waits up to a timeout)."""

    def __init__(self, capacity: int = HANDOFF_FRAMES) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 frame, got {capacity}")
        self._capacity = capacity
        self._frames: deque[av.VideoFrame] = deque()
        self._dropped = 0
        self._ready = threading.Condition()
        self._closed = False
        self._reason: str | None = None

    def put(self, frame: av.VideoFrame) -> None:
        with self._ready:
            if self._closed:
                return
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self._dropped += 1
            self._frames.append(frame)
            self._ready.notify()

    def take(self, timeout_s: float) -> tuple[av.VideoFrame, int] | None:
        """The oldest waiting frame and how many were dropped since the last take; None after `timeout_s` with
        none waiting, or once closed."""
        with self._ready:
            if not self._frames and not self._closed:
                self._ready.wait(timeout_s)
            if self._closed or not self._frames:
                return None
            dropped, self._dropped = self._dropped, 0
            return self._frames.popleft(), dropped

    def close(self, reason: str | None = None) -> None:
        """No more frames: waiting and later takes return None at once. `reason`: why the publisher is gone."""
        with self._ready:
            self._closed = True
            self._reason = reason
            self._frames.clear()
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        with self._ready:
            return self._closed

    @property
    def reason(self) -> str | None:
        with self._ready:
            return self._reason


class MediaClock:
    """A publisher's media time: seconds since its first frame, from RTP timestamps (32-bit, wrapping, and starting
    anywhere)."""

    def __init__(self) -> None:
        self._first: int | None = None
        self._last: int | None = None
        self._wraps = 0

    def seconds(self, frame: av.VideoFrame) -> float | None:
        if frame.pts is None or not frame.time_base:
            return None
        if self._last is not None and frame.pts < self._last - RTP_WRAP // 2:
            self._wraps += 1
        self._last = frame.pts
        pts = frame.pts + self._wraps * RTP_WRAP
        if self._first is None:
            self._first = pts
        return float((pts - self._first) * frame.time_base)


def whip_producer(frames: LatestFrames, stopping: Callable[[], bool]) -> Producer:
    """The capture side of a publisher: BGR frames (converted on the capture thread, not on the asyncio loop) until
    the publisher is gone, which ends the stream for good (`SourceEnded`, never a reconnect)."""
    calls = 0

    def produce() -> Iterator[DecodedFrame]:
        nonlocal calls
        calls += 1
        if calls > 1:  # a publisher cannot be called back: a new one is a new stream
            raise SourceEnded(frames.reason or "")
        return decoded(frames, stopping)

    return produce


def decoded(frames: LatestFrames, stopping: Callable[[], bool]) -> Iterator[DecodedFrame]:
    clock = MediaClock()
    while not stopping():
        taken = frames.take(TAKE_WAIT_S)
        if taken is None:
            if frames.closed:
                raise SourceEnded(frames.reason or "")
            continue
        frame, dropped = taken
        yield DecodedFrame(frame.to_ndarray(format="bgr24"), clock.seconds(frame), dropped_before=dropped)
