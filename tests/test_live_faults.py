"""A live RTSP camera that dies mid-stream and comes back, next to a second stream, through the whole pipeline:
the dropped stream reconnects by itself, says so in the store, the other stream is unaffected, and no score
already written is lost. Real GStreamer RTSP server in a private network namespace (tests/netns.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.pipeline import Pipeline, PipelineConfig
from stream.sources import Source, SourceOptions, parse_source
from stream.store import StoreReader, StoreWriter
from tests import media
from tests.netns import RtspServer, private_network
from tests.pipeline_run import session_info

FAST = SourceOptions(open_timeout_s=5, read_timeout_s=2, reconnect_initial_s=0.2, reconnect_max_s=1)


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def scores_of(db: Path, session_id: str, stream_id: str) -> list:
    with StoreReader(db) as reader:
        return [
            s for f in reader.faces(session_id, stream_id) for s in reader.scores(session_id, stream_id, f.track_id)
        ]


def test_a_dropping_camera_reconnects_and_loses_nothing(tmp_path, seed_model, engine_cache) -> None:
    from model.engine import build_engine

    camera_video = media.write_video(tmp_path / "camera.mp4", media.render(media.one_face(), 600))
    local_video = media.write_video(tmp_path / "local.mp4", media.render(media.one_face(), 600))
    db = tmp_path / "live.db"
    config = PipelineConfig(window=10, health_interval_s=0.2, status_interval_s=1e9)
    engine = build_engine(seed_model, "cpu", "onnxruntime", engine_cache)
    with RtspServer(video=camera_video, path="/cam") as server, StoreWriter(db) as store:
        url = server.url
        camera, local = parse_source(url), parse_source(str(local_video))
        session_id = store.start_session(session_info(seed_model, config, engine.name, [camera.display]))
        pipeline = Pipeline(engine, seed_model, store, session_id, config)
        sources = {
            "cam": Source("cam", camera, FAST),
            "local": Source("local", local, FAST, realtime=True),
        }
        for source in sources.values():
            source.open()
            pipeline.add_source(source)
        runner = threading.Thread(target=pipeline.run, kwargs={"duration_s": 60}, daemon=True)
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
            with StoreReader(db) as reader:
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
            pipeline.stop()
            runner.join(30)
        assert not runner.is_alive()
        final = scores_of(db, session_id, "cam")
        kept = {(s.track_id, s.frame_index) for s in final}
        assert {(s.track_id, s.frame_index) for s in before_drop} <= kept  # nothing written was lost
        local_during_outage = [s for s in scores_of(db, session_id, "local") if killed_at < s.t_capture < restarted_at]
        assert len(local_during_outage) >= 10  # the other stream kept being scored
        with StoreReader(db) as reader:
            assert {s.stream_id: s.health.state.value for s in reader.streams(session_id)}["cam"] == "ended"
