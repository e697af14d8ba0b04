"""What the detector says about its streams: the rate meters and the status line printed every few seconds."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from stream.config import LoopSettings
from stream.loop.status_lines import StatusPrinter, status_line
from stream.records import StreamHealth, StreamState
from stream.timing import FpsMeter, span_rate

pytestmark = pytest.mark.fast  # make test-fast


def ticked(stamps: list[float], window_s: float = 2.0) -> FpsMeter:
    meter = FpsMeter(window_s)
    for stamp in stamps:
        meter.tick(stamp)
    return meter


def every(interval_s: float, start: float, end: float) -> list[float]:
    count = round((end - start) / interval_s)
    return [start + i * interval_s for i in range(count + 1)]


# ---- FpsMeter ------------------------------------------------------------------------------------------------
def test_a_steady_rate_reads_as_itself() -> None:
    meter = ticked(every(1 / 30, 100.0, 110.0))
    assert meter.rate(110.0) == pytest.approx(30.0, rel=0.02)


def test_a_young_meter_reads_its_rate_once_it_has_some_history() -> None:
    meter = ticked(every(1 / 30, 100.0, 101.0))  # one second of a two-second window
    assert meter.rate(101.0) == pytest.approx(30.0, rel=0.02)


def test_events_microseconds_apart_are_not_thousands_per_second() -> None:
    # The end of a stream: the last batch scored two faces at once, and the window has emptied of the rest.
    stamps = [*every(1 / 30, 100.0, 110.0), 110.0 + 1e-6]
    meter = ticked(stamps)
    for now in (110.0, 111.0, 111.9, 112.0 + 1e-6):
        assert meter.rate(now) <= 31.0, now
    # A meter whose only events came in one burst.
    burst = ticked([5.0, 5.0 + 2e-6, 5.0 + 4e-6])
    assert burst.rate(5.0 + 4e-6) <= 5.0
    assert burst.rate(5.5) <= 5.0


def test_the_rate_falls_to_zero_once_events_stop() -> None:
    meter = ticked(every(1 / 30, 100.0, 110.0))
    assert 10.0 < meter.rate(111.0) < 20.0  # half the window is still within it
    assert meter.rate(112.1) == 0.0


def test_no_events_or_one_is_no_rate() -> None:
    assert FpsMeter().rate(1.0) == 0.0
    assert ticked([1.0]).rate(1.0) == 0.0


def test_a_stream_over_its_whole_span() -> None:
    assert span_rate(99, 10.0, 11.0) == pytest.approx(99.0)
    assert span_rate(5, 10.0, 10.0) == 0.0  # no span: no rate
    assert span_rate(5, None, None) == 0.0


# ---- the status line -----------------------------------------------------------------------------------------
def health(state: StreamState = StreamState.LIVE, stream_id: str = "call") -> StreamHealth:
    return StreamHealth(stream_id, state, 29.96, 28.04, 3, 0, None)


def test_a_file_is_labelled_a_file_with_its_progress() -> None:
    line = status_line(health(), "file", False, faces=2, frames_done=50, expected_frames=200)
    assert line == (
        "call [file]: in 30.0 fps, scored 14.0 windows/s per face (2 faces), 3 dropped [#####---------------] 25% "
        "(frame 50/200)"
    )
    assert "[live]" not in line


def test_a_file_that_stopped_decoding_says_so() -> None:
    line = status_line(health(StreamState.TRUNCATED), "file", False, faces=1, frames_done=10, expected_frames=200)
    assert line.startswith("call [file, truncated]: ") and "windows/s per face (1 face)," in line


@pytest.mark.parametrize("state", [StreamState.LIVE, StreamState.RECONNECTING, StreamState.STARTING])
def test_a_live_source_shows_its_state(state: StreamState) -> None:
    line = status_line(health(state, "cam"), "rtsp", True, faces=0, frames_done=10, expected_frames=None)
    assert line == f"cam [{state.value}]: in 30.0 fps, scored 28.0 windows/s (no face now), 3 dropped"


def test_a_stream_under_overload_says_what_it_thinned_and_skipped() -> None:
    busy = replace(health(StreamState.LIVE, "cam"), frames_thinned=30, crops_encoded=55, crops_skipped=45)
    line = status_line(busy, "rtsp", True, faces=4, frames_done=10, expected_frames=None)
    assert line == (
        "cam [live]: in 30.0 fps, scored 7.0 windows/s per face (4 faces), 3 dropped, 30 thinned, crops skipped 45%"
    )
    only_skipped = replace(busy, frames_thinned=0)
    assert status_line(only_skipped, "rtsp", True, 4, 10, None).endswith(", 3 dropped, crops skipped 45%")


# ---- what is printed every interval --------------------------------------------------------------------------
def test_a_steady_run_prints_one_line_per_stream_after_the_first() -> None:
    printer = StatusPrinter("openvino-int8", 262.0, "verdict threshold 0.500 ± 0.100: the default")
    streams = ["cam [live]: …", "call [file]: …"]
    first = printer.lines(streams, 0.0096)
    assert first == [
        "encoder openvino-int8 (auto: 262 crops/s measured): one crop costs 9.6 ms now",
        "verdict threshold 0.500 ± 0.100: the default",
        *streams,
    ]
    assert printer.lines(streams, 0.0110) == streams  # the cost moved a little: nothing new to say
    assert printer.lines(streams, 0.0080) == streams


def test_the_encoder_line_comes_again_when_a_crop_costs_much_more_or_less() -> None:
    printer = StatusPrinter("onnxruntime", None, "verdict threshold 0.620 ± 0.100: the checkpoint's")
    assert printer.lines([], None) == ["encoder onnxruntime", "verdict threshold 0.620 ± 0.100: the checkpoint's"]
    assert printer.lines([], None) == []
    assert printer.lines([], 0.010) == ["encoder onnxruntime: one crop costs 10.0 ms now"]  # the first cost known
    assert printer.lines([], 0.014) == []
    assert printer.lines([], 0.016) == ["encoder onnxruntime: one crop costs 16.0 ms now"]  # 1.6x what it said
    assert printer.lines([], 0.012) == []  # 1.33x less
    assert printer.lines([], 0.010) == ["encoder onnxruntime: one crop costs 10.0 ms now"]  # 1.6x less
    assert printer.lines([], None) == []  # no cost now: the last word stands


def test_windows_scored_are_counted_per_face_beside_the_frames_in() -> None:
    # 64 window scores a second for two faces is each face scored 32 times a second, out of 37 frames a second.
    two = replace(health(), fps_in=37.0, fps_scored=64.1)
    assert ": in 37.0 fps, scored 32.0 windows/s per face (2 faces), " in status_line(two, "rtsp", True, 2, 10, None)
    assert ", scored 64.1 windows/s per face (1 face), " in status_line(two, "rtsp", True, 1, 10, None)
    # Right after one of the two leaves, the rate still holds both faces' scores: shared by the faces scored lately.
    left = status_line(two, "rtsp", True, 1, 10, None, faces_scored=2)
    assert ", scored 32.0 windows/s per face (2 faces), " in left, left
    assert ", scored 32.0 windows/s per face (2 faces), " in status_line(two, "rtsp", True, 0, 10, None, faces_scored=2)


def test_a_stream_counts_the_faces_scored_over_its_rate_window() -> None:
    from stream.loop.stream_state import LoopStream  # the loop's modules load the face finder: only here

    stream = LoopStream(source=None, cropper=None)  # type: ignore[arg-type]  # neither is used by the tally
    stream.scored_window(1)
    stream.scored_window(2)
    assert stream.faces_scored_lately() == 2
    assert stream.faces_scored_lately(time.monotonic() + stream.fps_scored.window_s + 0.1) == 0  # both forgotten


def test_the_overload_banner_needs_more_than_a_fifth_thinned_or_skipped_over_the_last_10_s() -> None:
    # A few thinned frames are counted, as drops are, but they are not an overload.
    few = replace(health(StreamState.LIVE, "cam"), frames_thinned=4, overload_share=0.01)
    line = status_line(few, "rtsp", True, 1, 10, None)
    assert line.endswith(", 3 dropped, 4 thinned") and "overloaded" not in line
    assert "overloaded" not in status_line(replace(few, overload_share=0.2), "rtsp", True, 1, 10, None)
    busy = replace(few, frames_thinned=300, overload_share=0.34)
    assert status_line(busy, "rtsp", True, 1, 10, None).endswith(
        ", 300 thinned; overloaded: 34% of frames thinned or crops skipped in the last 10 s"
    )
    lenient = LoopSettings(overload_share=0.5, overload_window_s=30)
    assert "overloaded" not in status_line(busy, "rtsp", True, 1, 10, None, lenient)
    assert status_line(replace(busy, overload_share=0.6), "rtsp", True, 1, 10, None, lenient).endswith(
        "; overloaded: 60% of frames thinned or crops skipped in the last 30 s"
    )
