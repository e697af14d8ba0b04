"""Prometheus metrics: scraped over HTTP from a real uvicorn server while and after a real detector scores a test video
(real decoding, MediaPipe, the ONNX engine), parsed with prometheus_client's own parser; the token guard; what the
sink makes of stream states, faces and webhook outcomes; a registry per detector."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from model.engines import build_engine
from stream.capture.references import parse_source
from stream.detector import Detector
from stream.records import (
    Alert,
    EncodedBatch,
    FaceUpdate,
    StreamHealth,
    StreamInfo,
    StreamState,
    Verdict,
    VerdictState,
    WindowScore,
)
from stream.service.auth import token_guard
from stream.service.routes.metrics import MetricsRoute
from stream.sinks.metrics import Metrics
from stream.store import open_reader
from tests import media
from tests.netns import private_network
from tests.pipeline_run import detector_settings

FRAMES = 90  # 3 s paced at 30 fps: long enough to scrape while frames still flow


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` on uvicorn at a free 127.0.0.1 port, on its own thread; yields the base URL and always stops it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started or not thread.is_alive(), 20), "uvicorn did not start"
        assert server.started, "uvicorn exited while starting"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive(), "uvicorn did not stop"


def metrics_app(metrics: Metrics, token: str | None = None) -> FastAPI:
    app = FastAPI()
    app.include_router(MetricsRoute(metrics, token_guard(token)).router)
    return app


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(base: str) -> Samples:
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


# ---- a real run ----------------------------------------------------------------------------------------------------
def test_counters_move_as_frames_flow(seed_model, tmp_path: Path, engine_cache) -> None:
    video = media.write_video(tmp_path / "one_face.mp4", media.render(media.one_face(), FRAMES))
    db = tmp_path / "db.sqlite"
    overrides = {"service.port": 0, "sources.realtime": True, "pipeline.health_interval_s": 0.1}
    settings = detector_settings(db, overrides)
    engine = build_engine(seed_model, "cpu", "onnxruntime", engine_cache)
    with Detector(settings, [str(video)], loaded=seed_model, engine=engine) as detector:
        assert detector.metrics is not None  # a service port is set: the detector keeps metrics
        detector.open_source(parse_source(str(video)), name="s1")
        loop = threading.Thread(target=detector.run, daemon=True)
        with serving(metrics_app(detector.metrics)) as base:
            loop.start()
            try:
                assert wait_for(lambda: value(scrape(base), "deepfake_stream_windows_scored_total", stream="s1") > 0)
                during = scrape(base)
            finally:
                loop.join(60)
            assert not loop.is_alive()
            detector.close()
            after = scrape(base)
        session_id = detector.session_id

    s1 = {"stream": "s1"}
    # While the file played, part of it had been read; at the end, all of it, and more windows were scored.
    assert 0 < value(during, "deepfake_stream_frames_read_total", **s1) < FRAMES
    assert value(after, "deepfake_stream_frames_read_total", **s1) == FRAMES
    assert value(after, "deepfake_stream_windows_scored_total", **s1) > value(
        during, "deepfake_stream_windows_scored_total", **s1
    )
    assert value(during, "deepfake_stream_state", state="live", **s1) == 1
    assert value(after, "deepfake_stream_state", state="ended", **s1) == 1
    assert value(after, "deepfake_stream_state", state="live", **s1) == 0
    assert value(during, "deepfake_faces_live", verdict="UNSURE", **s1) == 1  # uncalibrated: UNSURE
    assert value(after, "deepfake_faces_live", verdict="UNSURE", **s1) == 0  # the stream ended: its face is gone

    # The same numbers as the store holds.
    with open_reader(db) as reader:
        scores = reader.scores(session_id, "s1", 1)
        [face] = reader.faces(session_id)
    windows = value(after, "deepfake_stream_windows_scored_total", **s1)
    assert windows == len(scores) > 0
    assert value(after, "deepfake_stream_frames_scored_total", **s1) == len({s.frame_index for s in scores})
    assert value(after, "deepfake_stream_crops_encoded_total", **s1) == face.crops
    assert value(after, "deepfake_capture_to_score_seconds_count", **s1) == windows
    latencies = [s.t_scored - s.t_capture for s in scores]
    assert value(after, "deepfake_capture_to_score_seconds_sum", **s1) == pytest.approx(sum(latencies))
    assert value(after, "deepfake_encode_batch_crops_sum") == face.crops  # one crop per frame, one face
    assert value(after, "deepfake_encode_seconds_count") == value(after, "deepfake_encode_batch_crops_count") > 0
    assert value(after, "deepfake_alerts_total", **s1) == 0
    assert value(after, "deepfake_stage_seconds", stage="encode", quantile="0.5") > 0
    info = {
        "session_id": session_id,
        "checkpoint": seed_model.name,
        "engine": engine.name,
        "device": "cpu",
        "calibrated": "false",
        "window": "10",
    }
    assert value(after, "deepfake_model_info", **info) == 1


def test_no_service_port_no_metrics(seed_model, tmp_path: Path, engine_cache) -> None:
    settings = detector_settings(tmp_path / "db.sqlite")
    engine = build_engine(seed_model, "cpu", "onnxruntime", engine_cache)
    with Detector(settings, loaded=seed_model, engine=engine) as detector:
        assert detector.metrics is None


# ---- the route --------------------------------------------------------------------------------------------------
def test_a_token_guards_the_scrape() -> None:
    metrics = Metrics({"checkpoint": "test"})
    with serving(metrics_app(metrics, "s3cret")) as base:
        refused = httpx.get(f"{base}/metrics", timeout=10)
        assert refused.status_code == 401
        assert "bearer token" in refused.json()["detail"] and "\n" not in refused.json()["detail"]
        wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        good = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert good.status_code == 200
        assert value(parse(good.text), "deepfake_model_info", checkpoint="test") == 1
        schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
        assert "/metrics" in schema["paths"]


# ---- what the sink counts ---------------------------------------------------------------------------------------
def health(state: StreamState, frames_read: int = 0, reconnects: int = 0, dropped: int = 0) -> StreamHealth:
    return StreamHealth("cam", state, 25.0, 20.0, dropped, reconnects, None, frames_read=frames_read)


def face(track_id: int, verdict: VerdictState, state: str = "live") -> FaceUpdate:
    return FaceUpdate("cam", track_id, 1.0, 2.0, None, None, state, verdict, 0.5, 3, None)


def samples_of(metrics: Metrics) -> Samples:
    return parse(generate_latest(metrics.registry).decode())


def test_states_faces_verdicts_and_restarts() -> None:
    metrics = Metrics()
    cam = {"stream": "cam"}
    metrics.send([StreamInfo("cam", "rtsp://cam", "rtsp"), health(StreamState.LIVE, frames_read=10)])
    metrics.send([face(1, VerdictState.UNSURE), face(2, VerdictState.UNSURE)])
    metrics.send(
        [
            face(1, VerdictState.FAKE),
            Verdict("cam", 1, VerdictState.FAKE, 3.0, 0.9),
            Alert("cam", 1, "turned_fake", 3.0, 0.9, None),
            WindowScore("sess", "cam", 1, 7, None, 10, 0.9, 100.0, 100.25),
            WindowScore("sess", "cam", 2, 7, None, 10, 0.2, 100.0, 100.25),
            EncodedBatch(2, 0.01),
        ]
    )
    samples = samples_of(metrics)
    assert value(samples, "deepfake_faces_live", verdict="FAKE", **cam) == 1
    assert value(samples, "deepfake_faces_live", verdict="UNSURE", **cam) == 1
    assert value(samples, "deepfake_verdict_changes_total", verdict="FAKE", **cam) == 1
    assert value(samples, "deepfake_alerts_total", **cam) == 1
    assert value(samples, "deepfake_stream_windows_scored_total", **cam) == 2
    assert value(samples, "deepfake_stream_frames_scored_total", **cam) == 1  # two faces, one frame
    assert value(samples, "deepfake_capture_to_score_seconds_bucket", le="0.25", **cam) == 2
    assert value(samples, "deepfake_encode_batch_crops_bucket", le="2.0") == 1

    # The camera drops out and comes back: its reconnects count; its counts never go backwards.
    metrics.send([health(StreamState.RECONNECTING, frames_read=12, dropped=3)])
    samples = samples_of(metrics)
    assert value(samples, "deepfake_stream_state", state="reconnecting", **cam) == 1
    assert value(samples, "deepfake_stream_state", state="live", **cam) == 0
    metrics.send(
        [health(StreamState.LIVE, frames_read=30, reconnects=1, dropped=3), face(2, VerdictState.REAL, "gone")]
    )
    samples = samples_of(metrics)
    assert value(samples, "deepfake_stream_reconnects_total", **cam) == 1
    assert value(samples, "deepfake_stream_frames_read_total", **cam) == 30
    assert value(samples, "deepfake_stream_frames_dropped_total", **cam) == 3
    assert value(samples, "deepfake_faces_live", verdict="UNSURE", **cam) == 0

    # The same name added again: its new source counts from zero, the counter goes on from where it was.
    metrics.send([StreamInfo("cam", "rtsp://cam", "rtsp"), health(StreamState.LIVE, frames_read=5)])
    samples = samples_of(metrics)
    assert value(samples, "deepfake_stream_frames_read_total", **cam) == 35
    assert value(samples, "deepfake_faces_live", verdict="FAKE", **cam) == 0  # a new stream has no faces yet


def test_webhook_outcomes_are_counted_and_registries_are_separate() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse a second set of the same names
    first.count_webhook("delivered")
    first.count_webhook("failed")
    first.count_webhook("failed")
    with pytest.raises(ValueError, match="outcome"):
        first.count_webhook("lost")
    samples = samples_of(first)
    assert value(samples, "deepfake_webhook_posts_total", outcome="delivered") == 1
    assert value(samples, "deepfake_webhook_posts_total", outcome="failed") == 2
    assert ("deepfake_webhook_posts_total", frozenset({("outcome", "dropped")})) in samples  # listed at 0
    assert value(samples_of(second), "deepfake_webhook_posts_total", outcome="failed") == 0


def test_the_scrape_has_no_created_series() -> None:
    """prometheus_client adds a `_created` series to every counter and histogram child: not in our scrape, and the
    process-global switch stays as it was (other registries in the process keep theirs)."""
    metrics = Metrics({"checkpoint": "seed"})
    metrics.send([StreamInfo("cam", "rtsp://cam", "rtsp"), health(StreamState.LIVE, frames_read=10)])
    metrics.send([WindowScore("sess", "cam", 1, 7, None, 10, 0.9, 100.0, 100.25), EncodedBatch(2, 0.01)])
    metrics.count_webhook("delivered")
    text = metrics.exposition()[0].decode()
    assert "deepfake_stream_frames_read_total" in text and "deepfake_encode_seconds_bucket" in text
    assert "_created" not in text
    other = CollectorRegistry()
    Counter("other_events", "Another library's counter", registry=other).inc()
    assert "other_events_created" in generate_latest(other).decode()
