"""Graceful overload (stream/overload.py): the encoder shared round-robin across faces within a time budget, live
frames thinned evenly but never below the rate tracking needs, files never thinned or skipped. First the
bookkeeping on its own, then the loop with test doubles and an encoder throttled to a fixed cost per crop."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from torch import Tensor

from model.network import FrameOutputs
from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.config import Settings, VerdictPolicy, with_overrides
from stream.loop.crop_encoder import EncodeCost
from stream.loop.face_state import FaceRegistry, RingShape
from stream.loop.overload import OverloadMeter, crops_that_fit, round_robin, thinned_of
from stream.loop.pipeline import Pipeline
from stream.records import Detection, FaceUpdate, Frame, StreamHealth, WindowScore
from tests.doubles import BLUE, RED, FakeEngine, RecordingSink, ScriptedFaces, Square, stub_producer

pytestmark = pytest.mark.fast  # make test-fast

LIVE_SPEC = SourceSpec("webcam", "stub", live=True, display="stub")
FILE_SPEC = SourceSpec("file", "stub", live=False, display="stub")
SETTINGS = {
    "faces.mode": "full_frame",
    "model.window": 10,
    "pipeline.status_interval_s": 1e9,
    "pipeline.health_interval_s": 0.05,
    "clips.enabled": False,
}
GREEN, YELLOW = (0, 255, 0), (0, 255, 255)
CROP_S = 0.020  # the throttled encoder's cost per crop: 50 crops/s at most
FRAME_S = 1 / 30


# ---- the bookkeeping ---------------------------------------------------------------------------------------------
def frame(index: int, t: float) -> Frame:
    return Frame("cam", index, t, index / 30, np.zeros((4, 4, 3), np.uint8))


def test_an_encode_costs_a_fixed_part_and_a_part_per_crop() -> None:
    cost = EncodeCost()
    assert cost.seconds(1) is None
    cost.add(4, 0.040)
    assert cost.seconds(1) == pytest.approx(0.010)  # one batch size so far: proportional
    for crops, seconds in [(1, 0.016), (2, 0.024), (4, 0.040), (1, 0.016), (3, 0.032)]:
        cost.add(crops, seconds)
    assert cost.seconds(1) == pytest.approx(0.016) and cost.seconds(8) == pytest.approx(0.072)


def test_what_fits_in_the_budget() -> None:
    def seconds(n: int) -> float:
        return 0.008 + 0.008 * n

    assert crops_that_fit(None, seconds, 4) is None  # no live deadline
    assert crops_that_fit(0.05, lambda n: None, 4) is None  # nothing timed yet
    assert crops_that_fit(0.05, seconds, 8) == 5
    assert crops_that_fit(0.05, seconds, 3) == 3
    assert crops_that_fit(0.01, seconds, 3) == 0  # late already


def test_round_robin_encodes_everything_while_the_encoder_keeps_up() -> None:
    assert round_robin([5, 0, 9], [1, 2, 3], fit=None, floor=0, contended=True) == [0, 1, 2]
    assert round_robin([5, 0, 9], [1, 2, 3], fit=3, floor=0, contended=False) == [0, 1, 2]


def test_round_robin_takes_the_faces_furthest_behind_then_those_that_waited_longest() -> None:
    shares, turns = [3, 2, 2, 3], [0, 5, 4, 1]
    assert round_robin(shares, turns, fit=2, floor=2, contended=False) == [2, 1]
    assert round_robin(shares, turns, fit=3, floor=2, contended=False) == [2, 1, 0]
    assert round_robin(shares, turns, fit=0, floor=2, contended=False) == [2]  # late: still the minimum, one
    # No face gets LEAD (2) crops ahead of the floor, however much time there is.
    assert round_robin([4, 3, 2], [0, 1, 2], fit=10, floor=2, contended=True) == [2, 1]
    assert round_robin([4, 4], [0, 1], fit=0, floor=2, contended=True) == []  # this frame's faces are all ahead


@pytest.mark.parametrize("fit", [1, 2, 3])
def test_every_face_gets_the_same_share_whatever_fits(fit: int) -> None:
    # Four faces in every frame, `fit` crops per frame, over 12 frames: each face encoded 3 x fit times.
    registry = FaceRegistry(RingShape(capacity=10, feature_dim=4, has_logits=True, thumb_size=8), VerdictPolicy())
    encoded = {track: 0 for track in range(1, 5)}
    for index in range(12):
        faces = [registry.see(frame(index, 100.0 + index), track, np.zeros((8, 8, 3), np.uint8)) for track in encoded]
        floor = min(face.share for face in faces)
        shares, turns = [face.share for face in faces], [face.turn for face in faces]
        picked = [faces[i] for i in round_robin(shares, turns, fit, floor, contended=True)]
        registry.requeue(picked)
        for face in picked:
            encoded[face.track_id] += 1
    assert set(encoded.values()) == {3 * fit}


def test_a_camera_alone_in_its_iterations_takes_no_more_than_its_share() -> None:
    # Camera A (one face) comes alone, when the budget would fit its crop; camera B (three faces) fits one crop
    # a frame. Both come once per round: without the lead, A's face would get a crop every round.
    registry = FaceRegistry(RingShape(capacity=10, feature_dim=4, has_logits=True, thumb_size=8), VerdictPolicy())
    crop = np.zeros((8, 8, 3), np.uint8)
    encoded: dict[tuple[str, int], int] = {}
    every = [registry.see(Frame(s, 0, 1.0, 0.0, crop), t, crop) for s, t in (("a", 1), ("b", 1), ("b", 2), ("b", 3))]
    for _ in range(40):
        for present, fit in ((every[:1], 1), (every[1:], 1)):
            floor = min(face.share for face in every)
            shares, turns = [face.share for face in present], [face.turn for face in present]
            picked = [present[i] for i in round_robin(shares, turns, fit, floor, contended=True)]
            registry.requeue(picked)
            for face in picked:
                encoded[(face.stream_id, face.track_id)] = encoded.get((face.stream_id, face.track_id), 0) + 1
    assert min(encoded.values()) >= 0.8 * max(encoded.values()), encoded


def test_frames_not_processed_are_thinned_while_the_camera_keeps_the_tracking_rate() -> None:
    assert thinned_of(2, 3 / 30, 10.0) == 2  # every third frame of 30 fps: 10 fps, all thinned
    assert thinned_of(4, 5 / 30, 10.0) == 3  # every fifth: 6 fps, one tracking period (one frame) lost
    assert thinned_of(29, 1.0, 10.0) == 20  # one frame in a second: nine tracking periods lost
    assert thinned_of(1000, 0.01, 10.0) == 1000  # a source far faster than the loop: all thinned


def test_the_overload_share_counts_only_the_last_window() -> None:
    """The larger of the shares of frames thinned and of crops skipped, over the last `window_s` only: a burst of
    thinning long ago, or 4 thinned frames in a minute, is not an overload now."""
    meter = OverloadMeter(10.0, now=0.0)
    totals = {"frames": 0, "thinned": 0, "encoded": 0, "skipped": 0}
    share = 0.0
    for second in range(1, 61):  # a minute: 30 frames a second taken, 2 faces encoded in each ...
        totals["frames"] += 30
        totals["encoded"] += 60
        if second <= 5:  # ... but for its first 5 s, half the frames thinned
            totals["frames"] -= 15
            totals["thinned"] += 15
        if second in (30, 40):
            totals["thinned"] += 2
        share = meter.share(float(second), **totals)
        if second == 5:
            assert share == pytest.approx(0.5)
    assert share == 0.0  # 60 s in, the thinning is 55 s old; the few thinned frames too are older than 10 s
    assert meter.share(61.0, totals["frames"] + 30, totals["thinned"] + 2, totals["encoded"] + 60, 0) < 0.01
    skipping = OverloadMeter(10.0, now=0.0)
    assert skipping.share(5.0, frames=150, thinned=0, encoded=60, skipped=40) == pytest.approx(0.4)


# ---- the loop, with a throttled encoder -----------------------------------------------------------------------
class ThrottledEngine(FakeEngine):
    """The fake engine at a fixed cost per crop, as a network at its limit."""

    def __init__(self, seconds_per_crop: float = CROP_S) -> None:
        super().__init__()
        self.seconds_per_crop = seconds_per_crop

    def encode(self, batch: Tensor) -> FrameOutputs:
        time.sleep(self.seconds_per_crop * batch.shape[0])
        return super().encode(batch)


class SlowFaces(ScriptedFaces):
    """Scripted faces taking `seconds` per frame, as detection on a busy machine."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.indices: list[int] = []

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        time.sleep(self.seconds)
        return super().detect(image_bgr, timestamp_ms)


class Detectors:
    """`detector_factory`: one detector per stream, kept for the test."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.made: list[ScriptedFaces] = []

    def __call__(self) -> ScriptedFaces:
        detector = SlowFaces(self.seconds) if self.seconds else ScriptedFaces()
        self.made.append(detector)
        return detector


def swaying(colours: Sequence[tuple[int, int, int]], side: int = 30):
    """Squares in rows of three, each swaying a few pixels left and right over about a second."""

    def scene(index: int) -> list[Square]:
        dx = round(4 * math.sin(index / 5))
        return [Square(colour, 5 + 50 * (i % 3) + dx, 10 + 60 * (i // 3), side) for i, colour in enumerate(colours)]

    return scene


def run_loop(
    loaded: LoadedModel,
    producers: Mapping[str, Any],
    seconds: float,
    overrides: Mapping[str, Any] | None = None,
    detect_s: float = 0.0,
    live: bool = True,
    engine: FakeEngine | None = None,
) -> tuple[Pipeline, RecordingSink, dict[str, Source], Detectors]:
    settings: Settings = with_overrides(Settings(), {**SETTINGS, **(overrides or {})}, "test")
    sink, detectors = RecordingSink(), Detectors(detect_s)
    pipeline = Pipeline(engine or ThrottledEngine(), loaded, "test-session", settings, [sink], detectors)
    sources = {
        name: Source(name, LIVE_SPEC if live else FILE_SPEC, settings.sources, producer=producer)
        for name, producer in producers.items()
    }
    for source in sources.values():
        pipeline.add_source(source)
    pipeline.run(duration_s=seconds)
    for source in sources.values():
        source.join(2)
    return pipeline, sink, sources, detectors


def camera(colours: Sequence[tuple[int, int, int]]):
    """A live stub camera at 30 fps."""
    return stub_producer(swaying(colours), burst=0, interval_s=FRAME_S)


def last_updates(sink: RecordingSink) -> dict[tuple[str, int], FaceUpdate]:
    return {(u.stream_id, u.track_id): u for u in sink.of(FaceUpdate)}


def crops_since(sink: RecordingSink, face: tuple[str, int], since: float) -> int:
    """Crops of one face encoded in frames captured after `since` (wall clock), from its updates."""
    updates = [u for u in sink.of(FaceUpdate) if (u.stream_id, u.track_id) == face]
    before = [u.crops for u in updates if u.last_seen <= since]
    return updates[-1].crops - (before[-1] if before else 0)


def final_health(pipeline: Pipeline) -> dict[str, StreamHealth]:
    return {h.stream_id: h for h in pipeline.health()}


def assert_frames_add_up(source: Source, detector: ScriptedFaces, health: StreamHealth) -> None:
    """Every frame the source read was processed, thinned, dropped by its full buffer, or is still in it."""
    assert detector.calls + health.frames_thinned + health.frames_dropped + len(source.buffer) == source.frames_read
    assert health.frames_dropped <= source.dropped
    assert len(source.buffer) <= source.buffer._capacity


def intervals(detector: ScriptedFaces) -> np.ndarray:
    """Seconds between the frames the loop processed, after its first half second (its engine warming up)."""
    called_at = np.array(detector.called_at)
    return np.diff(called_at[called_at >= called_at[0] + 0.5])


def test_four_faces_at_20_ms_a_crop_are_encoded_together_on_evenly_thinned_frames(seed_model) -> None:
    # 4 x 20 ms a frame: 12 frames a second, every face in every one of them, in one batch.
    colours, engine = (RED, BLUE, GREEN, YELLOW), ThrottledEngine()
    pipeline, _, sources, detectors = run_loop(seed_model, {"cam": camera(colours)}, seconds=2.5, engine=engine)

    summaries = pipeline.face_summaries()
    assert [(s.stream_id, s.track_id) for s in summaries] == [("cam", i) for i in (1, 2, 3, 4)]  # one id each
    processed = detectors.made[0].calls
    # Every face of every processed frame encoded, in one batch. An iteration the machine's load made late may skip a
    # frame's batch: all four faces alike, and rarely (the encoder itself keeps up: 80 ms of a 100 ms iteration).
    [(crops, skipped)] = {(s.crops, s.crops_skipped) for s in summaries}
    assert crops + skipped == processed and skipped <= 0.1 * processed
    assert len({s.frames_scored for s in summaries}) == 1 and summaries[0].frames_scored > 0
    assert set(engine.batches) == {4}
    [health] = pipeline.health()
    assert health.frames_thinned > 0 and health.frames_dropped <= 0.05 * health.frames_read
    assert health.overload_share > 0.2  # 12 of 30 frames a second processed: more than a fifth thinned
    assert_frames_add_up(sources["cam"], detectors.made[0], health)
    gaps = intervals(detectors.made[0])
    assert gaps.mean() <= 1 / 10 and np.percentile(gaps, 90) <= 0.13  # evenly, at or above the tracking rate


def test_six_faces_share_a_throttled_encoder_round_robin(seed_model) -> None:
    # 6 x 20 ms a frame would be 8 frames a second: below tracking's 10, so only the crops that fit are encoded.
    colours = (RED, BLUE, GREEN, YELLOW, (255, 0, 255), (255, 255, 0))
    pipeline, sink, sources, detectors = run_loop(seed_model, {"cam": camera(colours)}, seconds=2.5)

    summaries = pipeline.face_summaries()
    assert [(s.stream_id, s.track_id) for s in summaries] == [("cam", i) for i in range(1, 7)]  # one id each
    scores = [sum(1 for w in sink.of(WindowScore) if w.track_id == s.track_id) for s in summaries]
    assert [s.frames_scored for s in summaries] == scores
    assert min(scores) > 0 and min(scores) >= 0.8 * max(scores), scores
    assert all((s.crops_skipped or 0) > 0 for s in summaries)
    updates = last_updates(sink)
    assert all(updates[("cam", i)].crops_skipped > 0 for i in range(1, 7))
    [health] = pipeline.health()
    crops = sum(s.crops or 0 for s in summaries)
    assert health.crops_encoded == crops and health.crops_skipped == sum(s.crops_skipped or 0 for s in summaries)
    assert health.overload_share > 0.2  # frames thinned to the tracking rate, and crops skipped besides
    assert crops <= 2.5 / CROP_S + 10  # the encoder's rate, and no crop twice
    # Every face was seen in every frame processed, encoded or not.
    processed = detectors.made[0].calls
    assert all((s.crops or 0) + (s.crops_skipped or 0) == processed for s in summaries)
    assert_frames_add_up(sources["cam"], detectors.made[0], health)
    # Never slower than tracking needs, and scores stayed fresh: no queue grew anywhere.
    assert intervals(detectors.made[0]).mean() <= 1 / 10 * 1.1
    latency = next(t for t in pipeline.stage_timings() if t.stage == "latency")
    assert latency.p95_ms < 400


def test_four_cameras_with_two_faces_each_are_all_scored(seed_model) -> None:
    cameras = {f"cam{i}": camera((RED, BLUE)) for i in range(4)}
    pipeline, sink, sources, detectors = run_loop(seed_model, cameras, seconds=3.0)

    summaries = pipeline.face_summaries()
    assert sorted((s.stream_id, s.track_id) for s in summaries) == [(c, t) for c in sorted(cameras) for t in (1, 2)]
    assert all(s.frames_scored > 0 for s in summaries), [(s.stream_id, s.frames_scored) for s in summaries]
    # Once every camera is in (the first may have had the encoder to itself for a moment), each face gets its share.
    since = max(s.first_seen for s in summaries) + 0.2
    crops = {(s.stream_id, s.track_id): crops_since(sink, (s.stream_id, s.track_id), since) for s in summaries}
    assert min(crops.values()) >= 0.8 * max(crops.values()), crops
    health = final_health(pipeline)
    for name, source in sources.items():
        detector = next(d for d, s in zip(detectors.made, sources, strict=True) if s == name)
        assert_frames_add_up(source, detector, health[name])
        assert health[name].crops_skipped > 0
        assert intervals(detector).mean() <= 1 / 10 * 1.1  # every camera kept the tracking rate


def test_a_file_is_never_thinned_or_skipped(seed_model) -> None:
    frames = 20
    producer = stub_producer(swaying((RED, BLUE)), frames)
    pipeline, _, sources, detectors = run_loop(seed_model, {"clip": producer}, seconds=10, live=False)
    summaries = pipeline.face_summaries()
    assert [(s.crops, s.crops_skipped, s.frames_scored) for s in summaries] == [(frames, 0, frames - 9)] * 2
    [health] = pipeline.health()
    assert (health.frames_thinned, health.crops_skipped, health.crops_encoded) == (0, 0, 2 * frames)
    assert detectors.made[0].calls == frames and sources["clip"].dropped == 0


def test_a_live_camera_the_loop_cannot_detect_at_full_rate_is_thinned_evenly(seed_model) -> None:
    # 40 ms to find the faces of a 30 fps frame: every other or third frame is processed, evenly, none dropped.
    pipeline, _, sources, detectors = run_loop(seed_model, {"cam": camera((RED, BLUE))}, seconds=2.0, detect_s=0.040)
    [health] = pipeline.health()
    assert health.frames_thinned > 0 and health.frames_dropped <= 0.05 * health.frames_read
    assert_frames_add_up(sources["cam"], detectors.made[0], health)
    gaps = intervals(detectors.made[0])
    assert gaps.mean() <= 1 / 10 and np.percentile(gaps, 90) <= 0.13
    summaries = pipeline.face_summaries()
    assert [s.track_id for s in summaries] == [1, 2] and all(s.frames_scored > 0 for s in summaries)


def test_a_camera_the_encoder_keeps_up_with_is_neither_thinned_nor_skipped(seed_model) -> None:
    settings = with_overrides(Settings(), SETTINGS, "test")
    sink, detectors = RecordingSink(), Detectors()
    pipeline = Pipeline(FakeEngine(), seed_model, "test-session", settings, [sink], detectors)
    source = Source("cam", LIVE_SPEC, settings.sources, producer=camera((RED, BLUE)))
    pipeline.add_source(source)
    pipeline.run(duration_s=1.5)
    source.join(2)
    [health] = pipeline.health()
    assert (health.frames_thinned, health.crops_skipped) == (0, 0)
    assert health.crops_encoded == 2 * detectors.made[0].calls


def test_a_fixed_encode_budget_caps_each_iteration(seed_model) -> None:
    # 30 ms a frame at 20 ms a crop: one of the two faces per frame, alternating.
    pipeline, _, _, detectors = run_loop(
        seed_model, {"cam": camera((RED, BLUE))}, seconds=1.5, overrides={"pipeline.encode_budget_ms": 30}
    )
    summaries = pipeline.face_summaries()
    processed = detectors.made[0].calls
    crops = [s.crops or 0 for s in summaries]
    assert sum(crops) <= processed + 1 and abs(crops[0] - crops[1]) <= 2
    assert all((s.crops_skipped or 0) > 0 for s in summaries)
