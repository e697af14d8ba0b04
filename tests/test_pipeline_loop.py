"""The loop itself with test doubles (tests/doubles.py): synthetic frames with coloured squares for faces, a
detector that finds them, an engine whose p_fake follows colour, a recording sink. Stride, events, eviction,
drop counting, run-time control and the Detector over SQLite, each in well under a second."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from torch import Tensor

from model.network import FrameOutputs
from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.capture.sources import Producer, Source
from stream.config import Settings, settings_as_dict, with_overrides
from stream.detector import Detector
from stream.loop.pipeline import Pipeline
from stream.records import (
    Alert,
    AnnotatedFrame,
    DecodedFrame,
    FaceUpdate,
    StageTimings,
    StopReason,
    StreamHealth,
    StreamInfo,
    StreamState,
    Verdict,
    VerdictState,
    WindowScore,
)
from stream.store import open_reader
from tests.doubles import (
    BLUE,
    FPS,
    RED,
    FaceFactory,
    FakeEngine,
    RecordingSink,
    Scene,
    Square,
    stub_producer,
)

pytestmark = pytest.mark.fast  # make test-fast

FILE_SPEC = SourceSpec("file", "stub", live=False, display="stub")
LIVE_SPEC = SourceSpec("webcam", "stub", live=True, display="stub")
LOOP_DEFAULTS = {
    "faces.mode": "full_frame",  # these test the loop: every face found in every frame (tests/test_finding.py: roi)
    "model.window": 10,
    "model.stride": 1,
    "verdicts.rolling": 3,
    "pipeline.status_interval_s": 1e9,
    "pipeline.health_interval_s": 0.05,
    "clips.enabled": False,
}
LEFT_RED, RIGHT_BLUE = Square(RED, 10, 40), Square(BLUE, 110, 40)


@pytest.fixture(scope="module")
def calibrated(seed_model: LoadedModel) -> LoadedModel:
    """The seed model flagged calibrated, so verdicts can move (the fake engine does the scoring)."""
    return dataclasses.replace(seed_model, calibrated=True)


def loop_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    return with_overrides(Settings(), {**LOOP_DEFAULTS, **(overrides or {})}, "test")


def always(*squares: Square) -> Scene:
    return lambda index: squares


def file_source(settings: Settings, producer: Producer, stream_id: str = "cam") -> Source:
    return Source(stream_id, FILE_SPEC, settings.sources, producer=producer)


def live_source(settings: Settings, producer: Producer, stream_id: str = "cam") -> Source:
    return Source(stream_id, LIVE_SPEC, settings.sources, producer=producer)


def build(
    settings: Settings, loaded: LoadedModel, sink: RecordingSink, faces: FaceFactory, engine: FakeEngine | None = None
) -> Pipeline:
    return Pipeline(engine or FakeEngine(), loaded, "test-session", settings, [sink], faces)


def run_file(
    scene: Scene,
    frames: int,
    loaded: LoadedModel,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Pipeline, RecordingSink, FaceFactory]:
    """One file stub through a fresh loop until it ends (bounded at 5 s)."""
    settings, sink, faces = loop_settings(overrides), RecordingSink(), FaceFactory()
    pipeline = build(settings, loaded, sink, faces)
    pipeline.add_source(file_source(settings, stub_producer(scene, frames)))
    pipeline.run(duration_s=5)
    return pipeline, sink, faces


def updates_of(sink: RecordingSink, track_id: int) -> list[FaceUpdate]:
    return [u for u in sink.of(FaceUpdate) if u.track_id == track_id]


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


# ---- stride ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stride", "frames", "expected"),
    [
        (1, 14, [9, 10, 11, 12, 13]),  # every crop once the ring holds a window
        # The stride counts crops since the face's first one: with stride 3 the first score falls on crop 12
        # (frame 11), not on the first full window (crop 10).
        (3, 30, [11, 14, 17, 20, 23, 26, 29]),
        (5, 30, [9, 14, 19, 24, 29]),
    ],
)
def test_window_scores_fall_on_the_stride(seed_model, stride, frames, expected) -> None:
    pipeline, sink, _ = run_file(always(LEFT_RED), frames, seed_model, {"model.stride": stride})
    scores = sink.of(WindowScore)
    assert [s.frame_index for s in scores] == expected
    assert {(s.session_id, s.stream_id, s.track_id, s.window) for s in scores} == {("test-session", "cam", 1, 10)}
    assert [s.t_media for s in scores] == [i / FPS for i in expected]
    [summary] = pipeline.face_summaries()
    assert (summary.crops, summary.frames_scored) == (frames, len(expected))


# ---- the events a sink sees -----------------------------------------------------------------------------------
def test_sink_events_for_a_red_and_a_blue_face(calibrated) -> None:
    frames = 16  # window 10, stride 1: 7 scores per face; rolling 3: the verdict settles on the third (frame 11)
    pipeline, sink, faces = run_file(always(LEFT_RED, RIGHT_BLUE), frames, calibrated)
    red, blue = 1, 2  # left to right

    assert sink.events[0] == StreamInfo("cam", "stub", "file")
    assert sink.of(StreamInfo) == [StreamInfo("cam", "stub", "file")]

    scores = sink.of(WindowScore)
    for track in (red, blue):
        assert [s.frame_index for s in scores if s.track_id == track] == list(range(9, frames))
    assert all(s.p_fake > 0.99 for s in scores if s.track_id == red)
    assert all(s.p_fake < 0.01 for s in scores if s.track_id == blue)

    for track, verdict in ((red, VerdictState.FAKE), (blue, VerdictState.REAL)):
        updates = updates_of(sink, track)
        assert len(updates) == frames + 1  # one per frame the face was in, then its gone-update
        assert updates[0].thumbnail_jpeg is not None and updates[0].thumbnail_jpeg[:2] == b"\xff\xd8"
        assert all(u.thumbnail_jpeg is None for u in updates[1:])
        assert [u.state for u in updates] == ["live"] * frames + ["gone"]
        last = updates[-1]
        assert (last.verdict, last.frames_scored, last.first_t_media, last.last_t_media) == (
            verdict,
            frames - 9,
            0.0,
            (frames - 1) / FPS,
        )

    verdicts = sink.of(Verdict)
    assert [(v.track_id, v.state) for v in verdicts] == [(red, VerdictState.FAKE), (blue, VerdictState.REAL)]
    [alert] = sink.of(Alert)
    assert (alert.stream_id, alert.track_id, alert.kind, alert.t_media) == ("cam", red, "turned_fake", 11 / FPS)
    assert alert.p_fake > 0.99
    # The verdict and the alert follow the score that settled them.
    index = sink.events.index
    red_score_11 = next(s for s in scores if s.track_id == red and s.frame_index == 11)
    assert index(red_score_11) < index(verdicts[0]) < index(alert)

    frames_out = sink.of(AnnotatedFrame)
    assert frames_out and all(f.stream_id == "cam" for f in frames_out)
    assert cv2.imdecode(np.frombuffer(frames_out[0].jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (120, 160)
    health = sink.of(StreamHealth)
    assert len(health) >= 2  # at least one periodic report and the final one
    assert health[-1].stream_id == "cam" and health[-1].state == StreamState.ENDED
    assert health[-1].frames_dropped == 0
    assert sink.of(StageTimings)
    assert pipeline.health() == [health[-1]]
    assert pipeline.faces() == []

    # Nothing after the gone-updates but the final health (and the timings that may come with it).
    last_gone = max(index(updates_of(sink, t)[-1]) for t in (red, blue))
    assert all(isinstance(e, StreamHealth | StageTimings) for e in sink.events[last_gone + 1 :])
    summaries = {s.track_id: s for s in pipeline.face_summaries()}
    assert {t: (s.crops, s.frames_scored, s.verdict) for t, s in summaries.items()} == {
        red: (frames, frames - 9, VerdictState.FAKE),
        blue: (frames, frames - 9, VerdictState.REAL),
    }
    assert sink.closes == 1
    assert [(d.calls, d.closes) for d in faces.made] == [(frames, 1)]


def test_uncalibrated_model_never_gives_a_verdict(seed_model) -> None:
    _, sink, _ = run_file(always(LEFT_RED, RIGHT_BLUE), 16, seed_model)
    assert len(sink.of(WindowScore)) == 14
    assert sink.of(Verdict) == [] and sink.of(Alert) == []
    assert {u.verdict for u in sink.of(FaceUpdate)} == {VerdictState.UNSURE}


# ---- eviction -----------------------------------------------------------------------------------------------------
def test_a_face_gone_too_long_comes_back_with_a_new_id(seed_model) -> None:
    # max_missed 3. Red: frames 0-7, absent 8-12 (5 frames), back 13-19. Blue: absent 3-4 only (2 frames).
    def scene(index: int) -> list[Square]:
        return [s for s, absent in ((LEFT_RED, range(8, 13)), (RIGHT_BLUE, range(3, 5))) if index not in absent]

    pipeline, sink, _ = run_file(scene, 20, seed_model, {"tracking.max_missed_frames": 3})
    summaries = {s.track_id: s for s in pipeline.face_summaries()}
    assert {t: (s.crops, s.first_t_media, s.last_t_media) for t, s in summaries.items()} == {
        1: (8, 0.0, 7 / FPS),  # red, before it left
        2: (18, 0.0, 19 / FPS),  # blue kept its id through its short absence
        3: (7, 13 / FPS, 19 / FPS),  # red, back under a new id
    }
    old, new = updates_of(sink, 1), updates_of(sink, 3)
    assert [u.state for u in old] == ["live"] * 8 + ["gone"]
    assert [u.state for u in new] == ["live"] * 7 + ["gone"]
    assert new[0].thumbnail_jpeg is not None  # a new face: its own thumbnail
    events = sink.events
    assert events.index(old[-1]) < events.index(new[0])
    assert [u.state for u in updates_of(sink, 2)] == ["live"] * 18 + ["gone"]


def test_max_missed_zero_keeps_a_face_that_is_in_every_frame(seed_model) -> None:
    pipeline, _, _ = run_file(always(LEFT_RED), 5, seed_model, {"tracking.max_missed_frames": 0})
    assert [s.track_id for s in pipeline.face_summaries()] == [1]


# ---- drops on a live source ---------------------------------------------------------------------------------
def test_a_live_source_counts_every_frame_it_drops(seed_model) -> None:
    # 300 frames as fast as the producer can make them (the loop cannot keep up: the buffer of 2 drops), then
    # one every 10 ms, so the capture thread is asleep in the producer, not between frames, when the loop stops.
    settings, sink, faces = loop_settings({"sources.live_buffer": 2}), RecordingSink(), FaceFactory()
    pipeline = build(settings, seed_model, sink, faces)
    source = live_source(settings, stub_producer(always(LEFT_RED), burst=300, interval_s=0.01))
    pipeline.add_source(source)
    pipeline.run(duration_s=0.4)

    source.join(2)
    [final] = pipeline.health()
    assert final == sink.of(StreamHealth)[-1]
    # Frames the buffer dropped are thinned while the loop kept the tracking rate, dropped past it (test_overload.py).
    assert final.stream_id == "cam" and final.frames_dropped + final.frames_thinned == source.dropped
    assert source.dropped > 0
    processed = faces.made[0].calls
    assert processed > 0
    assert processed + source.dropped + len(source.buffer) == source.frames_read
    assert source.frames_read > 300


def test_the_final_health_of_a_stopped_live_stream_says_ended(seed_model) -> None:
    settings, sink = loop_settings(), RecordingSink()
    pipeline = build(settings, seed_model, sink, FaceFactory())
    pipeline.add_source(live_source(settings, stub_producer(always(LEFT_RED), burst=0, interval_s=0.003)))
    pipeline.run(duration_s=0.1)
    [final] = pipeline.health()
    assert final.state == StreamState.ENDED  # even though its capture thread may not have ended yet
    assert sink.of(StreamHealth)[-1] == final


@pytest.mark.parametrize("reason", [StopReason.CTRL_C, StopReason.RUN_ENDED])
def test_a_file_stopped_before_its_end_is_interrupted_and_says_who_stopped_it(seed_model, reason) -> None:
    # The file delivers slowly, so the loop often finds its buffer empty: "empty" must not read as "ended".
    settings, sink = loop_settings(), RecordingSink()
    pipeline = build(settings, seed_model, sink, FaceFactory())
    source = file_source(settings, stub_producer(always(LEFT_RED), 300, burst=0, interval_s=0.01))
    pipeline.add_source(source)
    stopper = threading.Timer(0.3, pipeline.stop, args=(reason,))
    stopper.start()
    pipeline.run(duration_s=10)
    stopper.join()
    [final] = pipeline.health()
    assert (final.state, final.stop_reason) == (StreamState.INTERRUPTED, reason)
    assert source.stopped_early and 0 < final.frames_read < 300


def test_a_file_read_to_its_end_is_never_interrupted(seed_model) -> None:
    settings, sink = loop_settings(), RecordingSink()
    pipeline = build(settings, seed_model, sink, FaceFactory())
    source = file_source(settings, stub_producer(always(LEFT_RED), 12))
    pipeline.add_source(source)
    pipeline.run(duration_s=10)
    pipeline.stop(StopReason.CTRL_C)  # too late: it has already ended
    [final] = pipeline.health()
    assert final.state == StreamState.ENDED and not source.stopped_early and final.frames_read == 12
    assert final.stop_reason is None


def then_pause(producer: Producer, pause_s: float) -> Producer:
    """`producer`'s frames, then `pause_s` of nothing before it ends (a decoder draining, a slow last read)."""

    def produce() -> Iterator[DecodedFrame]:
        yield from producer()
        time.sleep(pause_s)

    return produce


def test_a_finished_file_reports_its_rates_over_its_whole_span(calibrated) -> None:
    # 40 frames about 10 ms apart, then 2.3 s before the file ends: longer than the rate meters' 2 s window, so
    # a rate taken "now" at the end would have nothing left to measure.
    frames = 40
    settings, sink, faces = loop_settings(), RecordingSink(), FaceFactory()
    pipeline = build(settings, calibrated, sink, faces)
    producer = stub_producer(always(LEFT_RED, RIGHT_BLUE), frames, burst=0, interval_s=0.01)
    pipeline.add_source(file_source(settings, then_pause(producer, 2.3)))
    pipeline.run(duration_s=10)

    [final] = pipeline.health()
    assert final.state == StreamState.ENDED and sink.of(StreamHealth)[-1] == final
    called_at = faces.made[0].called_at
    assert len(called_at) == frames
    span = called_at[-1] - called_at[0]
    assert span > 0.35
    assert final.fps_in == pytest.approx((frames - 1) / span, rel=0.05)
    windows = len(sink.of(WindowScore))
    assert windows == 2 * (frames - 9)
    assert final.fps_scored == pytest.approx(windows / span, rel=0.05)
    assert final.fps_in < 101  # never faster than the frames came


class SlowEngine(FakeEngine):
    """Takes `delay_s` per encode call, as a real network would."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def encode(self, batch: Tensor) -> FrameOutputs:
        time.sleep(self.delay_s)
        return super().encode(batch)


def test_a_file_that_ended_is_no_longer_reported_while_a_busy_live_stream_goes_on(seed_model, caplog) -> None:
    # The live stub makes frames far faster than the loop (5 ms per encode) takes them: every iteration has one.
    settings = loop_settings({"pipeline.status_interval_s": 0.05})
    sink, faces = RecordingSink(), FaceFactory()
    pipeline = build(settings, seed_model, sink, faces, SlowEngine(0.005))
    loop = threading.Thread(target=pipeline.run, kwargs={"serve": True}, daemon=True)
    caplog.set_level(logging.INFO, logger="deepfake_stream")
    loop.start()
    try:
        pipeline.add_source(live_source(settings, stub_producer(always(LEFT_RED)), "cam")).result(timeout=5)
        file = stub_producer(always(RIGHT_BLUE), 12, burst=0, interval_s=0.03)
        pipeline.add_source(file_source(settings, file, "call")).result(timeout=5)
        assert wait_for(lambda: len(faces.made) == 2 and faces.made[1].closes == 1), "the ended file never closed"
        after_close = len(caplog.records)
        assert wait_for(lambda: sum("cam [live]" in r.getMessage() for r in caplog.records[after_close:]) >= 3)
    finally:
        pipeline.stop()
        loop.join(5)
    status = [r.getMessage() for r in caplog.records if " fps, scored " in r.getMessage()]
    assert any(line.startswith("call [file]: ") for line in status)  # reported while it ran ...
    later = [r.getMessage() for r in caplog.records[after_close:]]
    assert not [line for line in later if line.startswith("call [")]  # ... and never after it ended
    assert [(h.stream_id, h.state) for h in pipeline.health()] == [
        ("call", StreamState.ENDED),
        ("cam", StreamState.ENDED),
    ]


# ---- run-time control ----------------------------------------------------------------------------------------
def test_sources_come_and_go_while_the_loop_serves(seed_model) -> None:
    settings, sink, faces = loop_settings(), RecordingSink(), FaceFactory()
    pipeline = build(settings, seed_model, sink, faces)
    loop = threading.Thread(target=pipeline.run, kwargs={"serve": True}, daemon=True)
    loop.start()
    try:
        time.sleep(0.3)
        assert loop.is_alive()  # serving with no streams
        assert pipeline.health() == [] and pipeline.faces() == []
        assert {type(e) for e in sink.events} <= {StageTimings}  # only the loop's own timings

        source = live_source(settings, stub_producer(always(LEFT_RED), interval_s=0.003, burst=0))
        assert pipeline.add_source(source).result(timeout=5) is None
        assert wait_for(lambda: any(s.frames_scored > 0 for s in pipeline.face_summaries()))
        assert [(f.stream_id, f.track_id, f.state) for f in pipeline.faces()] == [("cam", 1, "live")]

        twin = live_source(settings, stub_producer(always(LEFT_RED)))
        with pytest.raises(ValueError, match="already in the pipeline"):
            pipeline.add_source(twin).result(timeout=5)

        assert pipeline.remove_source("cam").result(timeout=5) is None
        assert pipeline.faces() == []
        [final] = pipeline.health()
        assert (final.stream_id, final.state) == ("cam", StreamState.ENDED)
        # The sinks get the stream's last events at the end of the loop iteration that removed it.
        assert wait_for(lambda: sink.of(StreamHealth)[-1] == final)
        assert [(u.track_id, u.state) for u in sink.of(FaceUpdate)][-1] == (1, "gone")
        assert faces.made[0].closes == 1
        source.join(2)
        assert source.state == StreamState.ENDED

        with pytest.raises(KeyError, match="nope"):
            pipeline.remove_source("nope").result(timeout=5)
        time.sleep(0.05)
        assert loop.is_alive()  # no streams left, still serving

    finally:
        pipeline.stop()
        loop.join(5)
    assert not loop.is_alive()
    assert sink.closes == 1
    assert sink.of(StreamInfo) == [StreamInfo("cam", "stub", "webcam")]
    assert [(u.track_id, u.state) for u in sink.of(FaceUpdate)][-1] == (1, "gone")


def test_a_command_after_the_loop_has_ended_is_answered(seed_model) -> None:
    settings = loop_settings()
    pipeline = build(settings, seed_model, RecordingSink(), FaceFactory())
    pipeline.run()  # no sources, not serving: ends at once
    with pytest.raises(RuntimeError):
        pipeline.remove_source("cam").result(timeout=0.2)


def test_a_stream_id_added_again_gets_new_track_ids(seed_model) -> None:
    settings, sink, faces = loop_settings(), RecordingSink(), FaceFactory()
    pipeline = build(settings, seed_model, sink, faces)
    loop = threading.Thread(target=pipeline.run, kwargs={"serve": True}, daemon=True)
    loop.start()
    try:
        for colour in (LEFT_RED, RIGHT_BLUE):
            pipeline.add_source(file_source(settings, stub_producer(always(colour), 12))).result(timeout=5)
            assert wait_for(lambda: faces.made[-1].closes == 1)  # the file ended and its stream closed
    finally:
        pipeline.stop()
        loop.join(5)
    # Two different faces of stream "cam" in one session: (stream_id, track_id) must tell them apart.
    assert [(s.stream_id, s.track_id) for s in pipeline.face_summaries()] == [("cam", 1), ("cam", 2)]


# ---- the Detector over SQLite ----------------------------------------------------------------------------------
def test_detector_writes_scores_config_and_summaries_to_the_store(calibrated, tmp_path: Path) -> None:
    settings = loop_settings({"store.db": str(tmp_path / "runs" / "db.sqlite")})
    sink, faces = RecordingSink(), FaceFactory()
    frames = 15
    with Detector(
        settings, ["stub"], loaded=calibrated, engine=FakeEngine(), sinks=[sink], detector_factory=faces
    ) as detector:
        source = detector.open_source(FILE_SPEC, "cam", producer=stub_producer(always(LEFT_RED, RIGHT_BLUE), frames))
        assert source.stream_id == "cam"
        detector.run(duration_s=5)
        session_id = detector.session_id
    summaries = detector.face_summaries()
    assert sink.closes == 1

    with open_reader(settings.store.db) as reader:
        stored = reader.session_config(session_id)
        assert stored.pop("crop_geometry") == 1  # the whole-frame boxes these tests pin
        assert stored == settings_as_dict(detector.settings)  # what ran: the given settings, clips placed
        assert stored["clips"]["directory"] == str((tmp_path / "runs" / "clips").absolute())
        assert {k: v for k, v in stored.items() if k != "clips"} == {
            k: v for k, v in settings_as_dict(settings).items() if k != "clips"
        }
        [session] = reader.sessions()
        assert (session.engine, session.window, session.calibrated, session.ended_at is not None) == (
            "fake",
            10,
            True,
            True,
        )
        for track in (1, 2):
            stored = reader.scores(session_id, "cam", track)
            sent = [s for s in sink.of(WindowScore) if s.track_id == track]
            assert stored == sent and len(stored) == frames - 9
        stored_summaries = reader.face_summaries(session_id)
        assert [(s.stream_id, s.track_id) for s in stored_summaries] == [("cam", 1), ("cam", 2)]
        for mine, theirs in zip(summaries, stored_summaries, strict=True):
            assert (theirs.stream_id, theirs.track_id, theirs.frames_scored) == (
                mine.stream_id,
                mine.track_id,
                mine.frames_scored,
            )
            assert theirs.mean_p_fake == pytest.approx(mine.mean_p_fake, abs=1e-12)
            assert theirs.max_p_fake == pytest.approx(mine.max_p_fake, abs=1e-12)
            assert theirs.verdict == mine.verdict
        assert [s.verdict for s in stored_summaries] == [VerdictState.FAKE, VerdictState.REAL]
        assert [f.state for f in reader.faces(session_id)] == ["gone", "gone"]
        [alert] = reader.alerts(session_id)
        assert (alert.track_id, alert.kind, alert.t_media) == (1, "turned_fake", 11 / FPS)
        [stream] = reader.streams(session_id)
        assert stream.health is not None and stream.health.state == StreamState.ENDED


def test_a_command_whose_caller_gave_up_does_not_stop_the_loop(calibrated: LoadedModel) -> None:
    settings, sink, faces = loop_settings(), RecordingSink(), FaceFactory()
    pipeline = build(settings, calibrated, sink, faces)
    abandoned = pipeline.add_source(live_source(settings, stub_producer(always(LEFT_RED), 10_000), "gone"))
    assert abandoned.cancel()  # e.g. an HTTP request that timed out before the loop drained its command
    kept = pipeline.add_source(live_source(settings, stub_producer(always(LEFT_RED), 10_000), "kept"))
    runner = threading.Thread(target=pipeline.run, kwargs={"serve": True})
    runner.start()
    try:
        assert kept.result(timeout=5) is None
        assert [h.stream_id for h in pipeline.health()] == ["kept"]  # the abandoned one was never started
        assert pipeline.remove_source("kept").result(timeout=5) is None
        assert runner.is_alive()
    finally:
        pipeline.stop()
        runner.join(timeout=10)
        pipeline.close()
    assert not runner.is_alive()


def test_a_steady_stream_prints_its_status_line_and_the_threshold_once(seed_model, caplog) -> None:
    settings = loop_settings({"pipeline.status_interval_s": 0.05})
    pipeline = build(settings, seed_model, RecordingSink(), FaceFactory(), SlowEngine(0.005))
    loop = threading.Thread(target=pipeline.run, kwargs={"serve": True}, daemon=True)
    caplog.set_level(logging.INFO, logger="deepfake_stream")
    loop.start()
    try:
        pipeline.add_source(live_source(settings, stub_producer(always(LEFT_RED)), "cam")).result(timeout=5)
        assert wait_for(lambda: sum(r.getMessage().startswith("cam [live]") for r in caplog.records) >= 6)
    finally:
        pipeline.stop()
        loop.join(5)
    lines = [r.getMessage() for r in caplog.records]
    status = [line for line in lines if line.startswith("cam [live]")]
    assert len([line for line in lines if line.startswith("verdict threshold ")]) == 1
    assert len([line for line in lines if line.startswith("encoder ")]) < len(status)
