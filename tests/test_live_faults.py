"""A live RTSP camera that dies mid-stream and comes back, next to a second stream, through the whole pipeline:
the dropped stream reconnects by itself, says so in the store, the other stream is unaffected, and no score
already written is lost. Real GStreamer RTSP server in a private network namespace (tests/netns.py)."""

from __future__ import annotations

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


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def scores_of(db: Path, session_id: str, stream_id: str) -> list:
    with open_reader(db) as reader:
        return [
            s for f in reader.faces(session_id, stream_id) for s in reader.scores(session_id, stream_id, f.track_id)
        ]


def test_a_dropping_camera_reconnects_and_loses_nothing(tmp_path, seed_model, engine_cache) -> None:
    camera_video = media.write_video(tmp_path / "camera.mp4", media.render(media.one_face(), 600))
    local_video = media.write_video(tmp_path / "local.mp4", media.render(media.one_face(), 600))
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
            while time.monotonic() < deadline and len(scores_of(db, session_id, "cam")) < 20:
                time.sleep(0.2)
            before_drop = scores_of(db, session_id, "cam")
            assert len(before_drop) >= 20, "the camera was never scored"

            server.kill()  # the camera dies without a word
            killed_at = time.time()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and sources["cam"].reconnects < 2:
                time.sleep(0.1)
            assert sources["cam"].reconnects >= 2
            with open_reader(db) as reader:
                health = {s.stream_id: s.health for s in reader.streams(session_id)}
            assert health["cam"].state.value == "reconnecting" and health["cam"].reconnects >= 1
            assert health["cam"].last_error
            assert health["local"].state.value == "live"

            server.restart()
            restarted_at = time.time()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                after = [s for s in scores_of(db, session_id, "cam") if s.t_capture > restarted_at]
                if len(after) >= 10:
                    break
                time.sleep(0.2)
            assert len(after) >= 10, "no scores after the camera came back"
        finally:
            detector.stop()
            runner.join(30)
        assert not runner.is_alive()
        final = scores_of(db, session_id, "cam")
        kept = {(s.track_id, s.frame_index) for s in final}
        assert {(s.track_id, s.frame_index) for s in before_drop} <= kept  # nothing written was lost
        local_during_outage = [s for s in scores_of(db, session_id, "local") if killed_at < s.t_capture < restarted_at]
        assert len(local_during_outage) >= 10  # the other stream kept being scored
        with open_reader(db) as reader:
            assert {s.stream_id: s.health.state.value for s in reader.streams(session_id)}["cam"] == "ended"
