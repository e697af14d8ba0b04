"""The WHIP handoff alone (stream/capture/whip_frames.py): the frames that cross from the service's asyncio loop to a
stream's capture thread, the media clock, and a publisher that leaves; no network (tests/test_whip.py has the real
peers)."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.capture.whip_frames import LatestFrames, MediaClock, whip_producer
from stream.config import SourceOptions
from stream.records import StreamState

pytestmark = pytest.mark.fast  # make test-fast


def video_frame(pts: int = 0, value: int = 0) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), value, np.uint8), format="bgr24")
    frame.pts, frame.time_base = pts, Fraction(1, 90_000)
    return frame


def test_handoff_keeps_the_newest_frames_and_counts_the_dropped() -> None:
    frames = LatestFrames(capacity=2)
    for value in range(5):
        frames.put(video_frame(value=value))
    first = frames.take(0)
    assert first is not None
    assert int(first[0].to_ndarray(format="bgr24")[0, 0, 0]) == 3 and first[1] == 3
    second = frames.take(0)
    assert second is not None
    assert int(second[0].to_ndarray(format="bgr24")[0, 0, 0]) == 4 and second[1] == 0
    assert frames.take(0.01) is None


def test_a_waiting_take_is_woken_by_close_with_the_reason() -> None:
    frames = LatestFrames()
    woken: list[object] = []
    waiter = threading.Thread(target=lambda: woken.append(frames.take(30)))
    waiter.start()
    frames.close("publisher lost: test")
    waiter.join(5)
    assert woken == [None] and frames.closed and frames.reason == "publisher lost: test"
    frames.put(video_frame())  # after close: ignored, never blocks
    assert frames.take(0) is None


def test_media_time_counts_from_the_first_frame_across_the_rtp_wrap() -> None:
    clock = MediaClock()
    start = (1 << 32) - 45_000  # half a second before the 32-bit RTP clock wraps
    times = [clock.seconds(video_frame(pts % (1 << 32))) for pts in (start, start + 45_000, start + 90_000)]
    assert times == pytest.approx([0.0, 0.5, 1.0])


def test_a_publisher_that_leaves_ends_its_stream_for_good_with_the_reason() -> None:
    """The live reconnect logic must not call a gone publisher back: the stream ends, with its reason."""
    frames = LatestFrames(capacity=2)
    spec = SourceSpec("whip", "cam", live=True, display="whip:cam")
    source = Source("cam", spec, SourceOptions(reconnect_initial_s=0.01), producer=whip_producer(frames, lambda: False))
    for pts in range(5):
        frames.put(video_frame(pts * 3000))  # 3 of 5 dropped before the capture thread takes any
    source.open()
    source.start()
    deadline = time.monotonic() + 10
    while source.frames_read < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    frames.close("publisher lost: test")
    source.join(10)
    assert source.state == StreamState.LOST and source.reconnects == 0
    assert source.last_error == "publisher lost: test"
    assert source.frames_read == 2 and source.dropped == 3
    taken = [source.buffer.take()]
    assert taken[0] is not None and taken[0].image_bgr.shape == (48, 64, 3)
