"""Sinks are isolated: a log, metrics or webhook sink that raises is logged once per kind of error and counted, and
the other sinks and the loop go on; a store that fails still ends the run (its scores must not be dropped)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from stream.loop.pipeline import Pipeline
from stream.records import Event, WindowScore
from stream.sinks.protocol import SinkFanout
from stream.store import StoreError
from tests.doubles import FaceFactory, FakeEngine, RecordingSink, stub_producer
from tests.test_pipeline_loop import LEFT_RED, always, file_source, loop_settings

pytestmark = pytest.mark.fast  # make test-fast


class BrokenSink:
    """A sink that fails on every batch after the first, as a webhook or metrics bug would."""

    def __init__(self) -> None:
        self.batches = 0

    def send(self, events: Sequence[Event]) -> None:
        self.batches += 1
        if self.batches > 1:
            raise ValueError("this sink has a bug")

    def close(self) -> None:
        raise OSError("and cannot close either")


class FailingStore(RecordingSink):
    """A store whose disk is gone after a few batches."""

    critical = True

    def send(self, events: Sequence[Event]) -> None:
        super().send(events)
        if self.batches >= 3:
            raise StoreError("the store cannot be written: disk I/O error")


def test_a_failing_sink_is_logged_once_counted_and_the_others_go_on(seed_model, caplog) -> None:
    settings, recorder, broken = loop_settings(), RecordingSink(), BrokenSink()
    counted: list[tuple[str, str]] = []  # (sink, error type) per failure
    pipeline = Pipeline(
        FakeEngine(),
        seed_model,
        "s",
        settings,
        [broken, recorder],
        FaceFactory(),
        on_sink_error=lambda *e: counted.append(e),
    )
    pipeline.add_source(file_source(settings, stub_producer(always(LEFT_RED), 15)))
    with caplog.at_level(logging.ERROR, logger="deepfake_stream"):
        pipeline.run(duration_s=5)
    # The loop ran the file to its end, and the sink after the broken one got every score.
    assert [s.frame_index for s in recorder.of(WindowScore)] == list(range(9, 15))
    assert recorder.closes == 1
    assert broken.batches == recorder.batches  # the broken sink was still offered every batch
    failures = [r.getMessage() for r in caplog.records if "sink BrokenSink failed" in r.getMessage()]
    assert len(failures) == 2  # once per kind of error (ValueError on send, OSError on close), not once per batch
    assert counted.count(("BrokenSink", "ValueError")) == broken.batches - 1
    assert counted.count(("BrokenSink", "OSError")) == 1


def test_a_failing_store_still_ends_the_run(seed_model) -> None:
    settings, store, after = loop_settings(), FailingStore(), RecordingSink()
    pipeline = Pipeline(FakeEngine(), seed_model, "s", settings, [store, after], FaceFactory())
    pipeline.add_source(file_source(settings, stub_producer(always(LEFT_RED), 200)))
    with pytest.raises(StoreError, match="disk I/O error"):
        pipeline.run(duration_s=5)
    assert len(store.of(WindowScore)) < 200 - 9  # the run ended at the failure, long before the file's end


def test_the_fanout_counts_each_sink_and_error_apart() -> None:
    fanout = SinkFanout([BrokenSink(), RecordingSink()])
    for _ in range(4):
        fanout.send([])
    assert fanout.errors == {("BrokenSink", "ValueError"): 3}
