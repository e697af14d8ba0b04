"""A file or upload that did not reach its end says so: interrupted, by whom (--duration, Ctrl-C, SIGTERM, the API,
the run's end) and how far it got; a live source and a file read to its end never are (loop with test doubles)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.loop.pipeline import Pipeline
from stream.records import StopReason, StreamHealth, StreamState
from tests.doubles import FaceFactory, RecordingSink, stub_producer
from tests.test_pipeline_loop import FILE_SPEC, LEFT_RED, always, build, live_source, loop_settings, wait_for

pytestmark = pytest.mark.fast  # make test-fast

UPLOAD_SPEC = SourceSpec("upload", "stub", live=False, display="clip.mp4")
FRAMES = 300


def slow_file(pipeline: Pipeline, spec: SourceSpec | None = None) -> Source:
    """A 300-frame file (or upload) that delivers a frame every 10 ms, added to the loop."""
    settings = pipeline.settings
    producer = stub_producer(always(LEFT_RED), FRAMES, burst=0, interval_s=0.01)
    source = Source("cam", spec or FILE_SPEC, settings.sources, producer=producer)
    source.expected_frames = FRAMES  # what PyAV reads from a container's header
    pipeline.add_source(source)
    return source


def stop_after(seconds: float, stop: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, stop)
    timer.start()
    return timer


def assert_cut_short(final: StreamHealth, reason: StopReason) -> None:
    assert (final.state, final.stop_reason, final.frames_expected) == (StreamState.INTERRUPTED, reason, FRAMES)
    assert 0 < final.frames_read < FRAMES
    assert final.percent_read == pytest.approx(100 * final.frames_read / FRAMES)


def test_a_duration_that_runs_out_interrupts_a_file(seed_model: LoadedModel) -> None:
    sink = RecordingSink()
    pipeline = build(loop_settings(), seed_model, sink, FaceFactory())
    slow_file(pipeline)
    pipeline.run(duration_s=0.4)
    [final] = pipeline.health()
    assert_cut_short(final, StopReason.DURATION)
    assert sink.of(StreamHealth)[-1] == final  # what the store gets


@pytest.mark.parametrize("reason", [StopReason.CTRL_C, StopReason.SIGTERM, StopReason.RUN_ENDED])
def test_a_stop_interrupts_a_file_with_its_reason(seed_model: LoadedModel, reason: StopReason) -> None:
    pipeline = build(loop_settings(), seed_model, RecordingSink(), FaceFactory())
    slow_file(pipeline)
    timer = stop_after(0.3, lambda: pipeline.stop(reason))
    pipeline.run(duration_s=10)
    timer.join()
    assert_cut_short(pipeline.health()[0], reason)


def test_a_stream_removed_through_the_api_is_interrupted_by_the_api(seed_model: LoadedModel) -> None:
    pipeline = build(loop_settings(), seed_model, RecordingSink(), FaceFactory())
    slow_file(pipeline)
    runner = threading.Thread(target=pipeline.run, kwargs={"serve": True})
    runner.start()
    try:
        assert wait_for(lambda: bool(pipeline.health()) and pipeline.health()[0].frames_read > 5)
        pipeline.remove_source("cam").result(5)
        assert_cut_short(pipeline.health()[0], StopReason.API)
    finally:
        pipeline.stop()
        runner.join(10)
    assert pipeline.health()[0].stop_reason is StopReason.API  # the run's end does not overwrite it


def test_an_upload_still_running_when_the_run_ends_is_interrupted_by_the_end_of_the_run(
    seed_model: LoadedModel,
) -> None:
    pipeline = build(loop_settings(), seed_model, RecordingSink(), FaceFactory())
    slow_file(pipeline, UPLOAD_SPEC)
    runner = threading.Thread(target=pipeline.run, kwargs={"serve": True})
    runner.start()
    try:
        assert wait_for(lambda: bool(pipeline.health()) and pipeline.health()[0].frames_read > 5)
    finally:
        pipeline.stop()  # what a service's shutdown, or a cluster's, does
        runner.join(10)
    assert_cut_short(pipeline.health()[0], StopReason.RUN_ENDED)


def test_a_live_source_stopped_by_a_duration_ends_normally(seed_model: LoadedModel) -> None:
    settings = loop_settings()
    pipeline = build(settings, seed_model, RecordingSink(), FaceFactory())
    pipeline.add_source(live_source(settings, stub_producer(always(LEFT_RED), burst=0, interval_s=0.003)))
    pipeline.run(duration_s=0.2)
    [final] = pipeline.health()
    assert (final.state, final.stop_reason, final.frames_expected, final.percent_read) == (
        StreamState.ENDED,
        None,
        None,
        None,
    )
