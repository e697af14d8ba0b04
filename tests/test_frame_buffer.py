"""`stream.capture.frame_buffer.FrameBuffer`'s two policies on their own: live drops the oldest and hands out the
newest; file keeps every frame in order and makes the writer wait. Tiny in-memory frames, no media."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from stream.capture.frame_buffer import FrameBuffer
from stream.records import Frame

pytestmark = pytest.mark.fast  # make test-fast

BLOCKED_S = 0.3  # long enough to see a writer still waiting
RELEASED_S = 2.0  # generous bound for a woken writer to return (it polls every 0.1 s)


def frame(index: int) -> Frame:
    return Frame(
        "cam", index, t_capture=100.0 + index, t_media=index / 25, image_bgr=np.full((2, 2, 3), index, np.uint8)
    )


def indices(frames: list[Frame | None]) -> list[int | None]:
    return [None if f is None else f.index for f in frames]


def in_thread(work: Callable[[], None]) -> tuple[threading.Thread, threading.Event]:
    """Run `work` on a daemon thread; the Event is set once it returns."""
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


@pytest.mark.parametrize("live", [True, False])
@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_is_refused(capacity: int, live: bool) -> None:
    with pytest.raises(ValueError, match=f"capacity must be at least 1, got {capacity}"):
        FrameBuffer(capacity, live)


@pytest.mark.parametrize("live", [True, False])
def test_an_empty_buffer_gives_none_at_once(live: bool) -> None:
    buffer = FrameBuffer(3, live)
    assert buffer.take() is None
    assert len(buffer) == 0 and buffer.dropped == 0 and not buffer.exhausted


# ---- live: the newest frame wins -----------------------------------------------------------------------------------


def test_live_full_buffer_drops_its_oldest_on_put() -> None:
    buffer, stop = FrameBuffer(3, live=True), threading.Event()
    for i in range(5):
        buffer.put(frame(i), stop)  # never blocks, even full
    assert len(buffer) == 3
    assert buffer.dropped == 2  # frames 0 and 1
    taken = buffer.take()
    assert taken is not None and taken.index == 4
    assert taken.image_bgr[0, 0, 0] == 4 and taken.t_capture == 104.0
    assert buffer.dropped == 4  # plus frames 2 and 3, skipped by take()
    assert len(buffer) == 0 and buffer.take() is None


def test_live_take_returns_the_newest_and_counts_what_it_skipped() -> None:
    buffer, stop = FrameBuffer(4, live=True), threading.Event()
    buffer.put(frame(0), stop)
    assert indices([buffer.take()]) == [0] and buffer.dropped == 0  # a lone frame skips nothing
    buffer.put(frame(1), stop)
    buffer.put(frame(2), stop)
    buffer.put(frame(3), stop)
    assert indices([buffer.take(), buffer.take()]) == [3, None]
    assert buffer.dropped == 2
    buffer.put(frame(4), stop)
    assert indices([buffer.take()]) == [4] and buffer.dropped == 2


def test_live_capacity_one_keeps_only_the_latest() -> None:
    buffer, stop = FrameBuffer(1, live=True), threading.Event()
    for i in range(3):
        buffer.put(frame(i), stop)
    assert len(buffer) == 1 and buffer.dropped == 2
    assert indices([buffer.take(), buffer.take()]) == [2, None]


# ---- file: every frame, in order, the writer waits ----------------------------------------------------------------


def test_file_frames_come_out_in_order_and_none_is_dropped() -> None:
    buffer, stop = FrameBuffer(3, live=False), threading.Event()
    for i in range(3):
        buffer.put(frame(i), stop)
    assert len(buffer) == 3
    assert indices([buffer.take() for _ in range(4)]) == [0, 1, 2, None]
    assert buffer.dropped == 0


def test_file_put_on_a_full_buffer_waits_for_a_take() -> None:
    buffer, stop = FrameBuffer(2, live=False), threading.Event()
    buffer.put(frame(0), stop)
    buffer.put(frame(1), stop)
    thread, done = in_thread(lambda: buffer.put(frame(2), stop))
    assert not done.wait(BLOCKED_S), "put returned while the buffer was full"
    assert len(buffer) == 2
    assert indices([buffer.take()]) == [0]  # frees one slot
    assert done.wait(RELEASED_S), "put still blocked after a take freed a slot"
    thread.join(RELEASED_S)
    assert len(buffer) == 2
    assert indices([buffer.take() for _ in range(3)]) == [1, 2, None]
    assert buffer.dropped == 0


def test_file_put_returns_when_stop_is_set() -> None:
    buffer, stop = FrameBuffer(2, live=False), threading.Event()
    buffer.put(frame(0), stop)
    buffer.put(frame(1), stop)
    thread, done = in_thread(lambda: buffer.put(frame(2), stop))
    assert not done.wait(BLOCKED_S), "put returned while the buffer was full"
    stop.set()
    assert done.wait(RELEASED_S), "put still blocked after stop was set"
    thread.join(RELEASED_S)
    assert buffer.dropped == 0  # nothing dropped, not even the frame put at stop
    assert indices([buffer.take() for _ in range(4)]) == [0, 1, 2, None]


def test_file_writer_faster_than_reader_loses_nothing() -> None:
    buffer, stop = FrameBuffer(2, live=False), threading.Event()
    count = 20

    def write_all() -> None:
        for i in range(count):
            buffer.put(frame(i), stop)

    thread, done = in_thread(write_all)
    taken: list[int] = []
    deadline = time.monotonic() + 5.0
    while len(taken) < count and time.monotonic() < deadline:
        assert len(buffer) <= 2
        got = buffer.take()
        if got is not None:
            taken.append(got.index)
        else:
            time.sleep(0.001)
    assert done.wait(RELEASED_S)
    thread.join(RELEASED_S)
    assert taken == list(range(count))
    assert buffer.dropped == 0


# ---- closing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("live", [True, False])
def test_exhausted_only_once_closed_and_fully_read(live: bool) -> None:
    buffer, stop = FrameBuffer(3, live), threading.Event()
    buffer.put(frame(0), stop)
    buffer.put(frame(1), stop)
    assert not buffer.exhausted  # not closed
    buffer.close()
    assert not buffer.exhausted  # closed, frames still waiting
    first = buffer.take()
    assert first is not None and first.index == (1 if live else 0)
    if not live:
        assert not buffer.exhausted  # frame 1 still waiting
        assert indices([buffer.take()]) == [1]
    assert buffer.exhausted
    assert buffer.take() is None and buffer.exhausted
    assert buffer.dropped == (1 if live else 0)


@pytest.mark.parametrize("live", [True, False])
def test_an_empty_buffer_is_exhausted_once_closed(live: bool) -> None:
    buffer = FrameBuffer(2, live)
    assert not buffer.exhausted
    buffer.close()
    assert buffer.exhausted
