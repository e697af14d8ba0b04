"""A live RTSP camera that dies mid-stream and comes back, next to a second stream, through the whole pipeline:
the dropped stream reconnects by itself, says so in the store, the other stream is unaffected, and no score
already written is lost. Real GStreamer RTSP server in a private network namespace (tests/netns.py).

Rates, not counts: each stream's scores per second are compared with its own rate before the outage, measured in
the same run, so a loaded machine slows both sides alike (DESIGN.md, "Tests")."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.engines import build_engine
from stream.detector import Detector
from stream.store import open_reader
from tests import media
from tests.netns import RtspServer, private_network
from tests.pipeline_run import detector_settings

# Quick to give up and quick to retry; the local file is paced like a live stream.
FAST = {
    "sources.open_timeout_s": 5,
    "sources.read_timeout_s": 2,
    "sources.reconnect_initial_s": 0.2,
    "sources.reconnect_max_s": 1,
    "sources.realtime": True,
    "pipeline.health_interval_s": 0.2,
}
SPAN_S = 3.0  # each rate is measured over at least this long: before the outage, the outage, after it
LATENCY_S = 1.0  # frames captured up to this long ago may not be scored and written yet
KEPT_RATE = 0.5  # a stream keeps at least this share of its rate before the outage


def face_in_view(frames: int) -> Iterator:
    """One face drifting right and back, in view for the whole video (`media.one_face` alone leaves after ~8 s)."""
    scene, turn = media.one_face(), 150
    return (scene(min(i % (2 * turn), 2 * turn - i % (2 * turn))) for i in range(frames))


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def scores_of(db: Path, session_id: str, stream_id: str) -> list:
    with open_reader(db) as reader:
        return [
            s for f in reader.faces(session_id, stream_id) for s in reader.scores(session_id, stream_id, f.track_id)
        ]


def rate(scores: list, start: float, end: float) -> float:
    """Scores per second of the frames captured between `start` and `end` (time.time())."""
    return sum(start <= s.t_capture < end for s in scores) / (end - start)


def first_capture(scores: list) -> float:
    return min((s.t_capture for s in scores), default=math.inf)


def test_a_dropping_camera_reconnects_and_loses_nothing(tmp_path, seed_model, engine_cache) -> None:
    camera_video = media.write_video(tmp_path / "camera.mp4", face_in_view(600))  # 20 s: restarts from its start
    local_video = media.write_video(tmp_path / "local.mp4", face_in_view(1200))  # 40 s: outlasts the whole test
    db = tmp_path / "live.db"
    engine = build_engine(seed_model, "cpu", "onnxruntime", engine_cache)
    settings = detector_settings(db, FAST)
    with (
        RtspServer(video=camera_video, path="/cam") as server,
        Detector(settings, [server.url], loaded=seed_model, engine=engine) as detector,
    ):
        session_id = detector.session_id
        sources = {
            "cam": detector.open_source(server.url, "cam"),
            "local": detector.open_source(str(local_video), "local"),
        }
        runner = threading.Thread(target=detector.run, kwargs={"duration_s": 60}, daemon=True)
        runner.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the camera scored for SPAN_S: its rate before the outage
                if time.time() >= first_capture(scores_of(db, session_id, "cam")) + SPAN_S:
                    break
                time.sleep(0.2)
            before_drop = scores_of(db, session_id, "cam")
            assert time.time() >= first_capture(before_drop) + SPAN_S, "the camera was not scored"

            server.kill()  # the camera dies without a word
            killed_at = time.time()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (sources["cam"].reconnects < 2 or time.time() < killed_at + SPAN_S):
                time.sleep(0.1)
            assert sources["cam"].reconnects >= 2
            with open_reader(db) as reader:
                health = {s.stream_id: s.health for s in reader.streams(session_id)}
            assert health["cam"].state.value == "reconnecting" and health["cam"].reconnects >= 1
            assert health["cam"].last_error
            assert health["local"].state.value == "live"

            server.restart()
            restarted_at = time.time()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                after = [s for s in scores_of(db, session_id, "cam") if s.t_capture > restarted_at]
                if after:
                    break
                time.sleep(0.2)
            assert after, "no scores after the camera came back"
            back_at = first_capture(after)
            while time.time() < back_at + SPAN_S + LATENCY_S:
                time.sleep(0.2)
        finally:
            detector.stop()
            runner.join(30)
        assert not runner.is_alive()
        final = scores_of(db, session_id, "cam")
        kept = {(s.track_id, s.frame_index) for s in final}
        assert {(s.track_id, s.frame_index) for s in before_drop} <= kept  # nothing written was lost
        # The other stream kept being scored through the outage, and the camera is scored again as before it.
        local = scores_of(db, session_id, "local")
        local_before = rate(local, first_capture(local), killed_at)
        local_during = rate(local, killed_at, restarted_at)
        assert local_during >= KEPT_RATE * local_before, (
            f"other stream: {local_during:.1f}/s, {local_before:.1f}/s before"
        )
        cam_before = rate(final, first_capture(final), killed_at)
        cam_back = rate(final, back_at, back_at + SPAN_S)
        assert cam_back >= KEPT_RATE * cam_before, f"camera: {cam_back:.1f}/s once back, {cam_before:.1f}/s before"
        with open_reader(db) as reader:
            assert {s.stream_id: s.health.state.value for s in reader.streams(session_id)}["cam"] == "ended"
