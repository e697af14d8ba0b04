"""Alert webhooks against receivers the tests start (http.server on 127.0.0.1, in a private network namespace): a real
detector's FAKE alert and its clip reach the receiver; a refusing, a hanging and an erroring receiver neither hold up
the loop nor close(), and their failures are counted; a full queue drops the oldest; streams lost and recovered;
the --webhook flag."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import run_stream
from model.engines import build_engine
from model.preprocess import crop_face
from model.weights import LoadedModel, load_checkpoint, save_checkpoint
from stream.capture.references import SourceSpec, parse_source
from stream.config import ServiceSettings, Settings
from stream.detector import Detector
from stream.faces.mediapipe_detectors import FaceDetector
from stream.records import Alert, StreamHealth, StreamInfo, StreamState, WindowScore
from stream.sinks.webhooks import SCHEMA, WebhookSink
from stream.store import open_reader
from tests import media
from tests.doubles import BLUE, RED, FaceFactory, FakeEngine, RecordingSink, Square, stub_producer
from tests.helpers import fit_seed_head
from tests.netns import private_network
from tests.pipeline_run import detector_settings

EVALUATED = {"evaluation": {"threshold": 0.5}}  # only an evaluated checkpoint is calibrated

STUB_FILE = SourceSpec("file", "stub", live=False, display="stub")


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


# ---- a receiver ---------------------------------------------------------------------------------------------------
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST's JSON body; it answers `status` at once, or holds every
    request unanswered while `hold` is set (until `release()`)."""

    def __init__(self, status: int = 200, hold: bool = False, location: str | None = None) -> None:
        self.status = status
        self.location = location
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []  # each body as it came, for checking its signature
        self.headers: list[dict[str, str]] = []
        self.answered = 0
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.raw.append(body)
                receiver.bodies.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                receiver.gate.wait()
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answered += 1

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook?key=s3cret"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self.gate.set()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [body for body in list(self.bodies) if body["event"] == kind]

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextlib.contextmanager
def receiver(status: int = 200, hold: bool = False, location: str | None = None) -> Iterator[Receiver]:
    started = Receiver(status, hold, location)
    try:
        yield started
    finally:
        started.stop()


def refused_url() -> str:
    """A URL on a loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def service(*urls: str, **values: Any) -> ServiceSettings:
    return ServiceSettings(webhooks=urls, **values)


def alert(track_id: int, t: float = 1_800_000_000.0) -> Alert:
    return Alert("cam", track_id, "turned_fake", t, 0.9, None, t_media=1.5)


# ---- a real detector's alert --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def colour_is_fake(tmp_path_factory, seed_model) -> LoadedModel:
    """A checkpoint whose head calls the colour astronaut FAKE and the grayscale one REAL (as tests/test_pipeline)."""
    scene = media.colour_and_gray_faces()
    with FaceDetector() as detector:
        boxes = sorted(d.box_xyxy for d in detector.detect(scene(0), 0))
    colour = [crop_face(scene(i), boxes[0]) for i in range(4)]
    gray = [crop_face(scene(i), boxes[1]) for i in range(4)]
    fitted = fit_seed_head(seed_model.network, colour, gray)
    path = tmp_path_factory.mktemp("ckpt") / "colour_is_fake.pt"
    return load_checkpoint(
        save_checkpoint(fitted, path, window=10, trained_on="test: colour vs gray", metrics=EVALUATED)
    )


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_a_fake_face_alerts_the_receiver_with_its_clip(colour_is_fake, tmp_path: Path, engine_cache) -> None:
    video = media.write_video(tmp_path / "colour_gray.mkv", media.render(media.colour_and_gray_faces(), 45))
    db = tmp_path / "db.sqlite"
    with receiver() as hook:
        overrides = {
            "verdicts.hysteresis": 0.2,
            "verdicts.rolling": 3,
            "clips.enabled": True,
            "service.webhooks": [hook.url],
            "service.port": 0,  # metrics too, which count the deliveries (no server is started here)
        }
        settings = detector_settings(db, overrides)
        engine = build_engine(colour_is_fake, "cpu", "onnxruntime", engine_cache)
        with Detector(settings, [str(video)], loaded=colour_is_fake, engine=engine) as detector:
            detector.open_source(parse_source(str(video)), name="s1")
            detector.run(duration_s=120)
            detector.close()  # the sinks close: the queued clip event gets its grace
        assert detector.metrics is not None
        delivered = metric_samples(generate_latest(detector.metrics.registry).decode())
        assert delivered[("deepfake_webhook_posts_total", frozenset({("outcome", "delivered")}))] == 2
        with open_reader(db) as reader:
            [stored] = reader.alerts(detector.session_id)

    [posted_alert] = hook.events("alert")
    assert posted_alert == {
        "schema": SCHEMA,
        "event": "alert",
        "session_id": detector.session_id,
        "stream_id": "s1",
        "t": pytest.approx(stored.t),
        "track_id": stored.track_id,
        "kind": "turned_fake",
        "p_fake": pytest.approx(stored.p_fake),
        "t_media": pytest.approx(stored.t_media),
        "clip_path": None,  # still recording when the alert went out
    }
    assert posted_alert["p_fake"] >= 0.7  # threshold 0.5 + hysteresis 0.2
    [posted_clip] = hook.events("clip")
    assert {k: posted_clip[k] for k in posted_alert if k not in ("event", "clip_path")} == {
        k: v for k, v in posted_alert.items() if k not in ("event", "clip_path")
    }
    assert posted_clip["clip_path"] == stored.clip_path and Path(stored.clip_path).is_file()
    assert posted_clip["clip_frames"] > 0
    assert all(h["Content-Type"] == "application/json" for h in hook.headers)
    assert [b["event"] for b in hook.bodies] == ["alert", "clip"]  # a file ending is no stream lost


# ---- receivers that fail --------------------------------------------------------------------------------------------
def run_red_face(sink: WebhookSink, tmp_path: Path, calibrated: LoadedModel, frames: int = 30) -> RecordingSink:
    """A file of a red "face" (FAKE for the fake engine) and a blue one through a Detector with `sink`; the loop ends
    at the file's end. The recording sink tells what the loop did."""
    settings = detector_settings(
        tmp_path / "db.sqlite", {"faces.mode": "full_frame", "verdicts.rolling": 3, "pipeline.status_interval_s": 1e9}
    )
    recorded = RecordingSink()
    with Detector(
        settings,
        ["stub"],
        loaded=calibrated,
        engine=FakeEngine(),
        sinks=[sink, recorded],
        detector_factory=FaceFactory(),
    ) as detector:
        scene = stub_producer(lambda _: (Square(RED, 10, 40), Square(BLUE, 110, 40)), frames)
        detector.open_source(STUB_FILE, "cam", producer=scene)
        detector.run(duration_s=60)
    return recorded


@pytest.fixture(scope="module")
def calibrated(seed_model) -> LoadedModel:
    return dataclasses.replace(seed_model, calibrated=True)


def test_a_hanging_receiver_holds_up_neither_the_loop_nor_close(calibrated, tmp_path: Path) -> None:
    with receiver(hold=True) as hook:
        sink = WebhookSink(service(hook.url, webhook_timeout_s=60), "sess", close_grace_s=0.2)
        recorded = run_red_face(sink, tmp_path, calibrated)  # the Detector's close() closed the sink too
        # The loop scored the whole file and closed while the alert's POST was still unanswered: it never waited.
        assert len(recorded.of(WindowScore)) == 2 * (30 - 9)
        assert len(recorded.of(Alert)) == 1
        assert wait_for(lambda: len(hook.bodies) == 1)
        assert hook.answered == 0
        assert sink.counts().get("delivered", 0) == 0
        hook.release()  # the receiver answers at last: the POST in flight completes on its own thread
        assert wait_for(lambda: sink.counts().get("delivered", 0) == 1)
    assert hook.events("alert")[0]["track_id"] == 1


def test_a_refusing_receiver_is_retried_then_counted_failed(calibrated, tmp_path: Path) -> None:
    sink = WebhookSink(service(refused_url(), webhook_retries=2), "sess", backoff_s=0.01, close_grace_s=5)
    recorded = run_red_face(sink, tmp_path, calibrated)
    assert len(recorded.of(WindowScore)) == 2 * (30 - 9) and len(recorded.of(Alert)) == 1
    assert wait_for(lambda: sink.counts().get("failed", 0) == 1)
    assert sink.counts() == {"retried": 2, "failed": 1}


def test_a_receiver_that_never_answers_times_out_and_is_counted(calibrated) -> None:
    with receiver(hold=True) as hook:
        sink = WebhookSink(service(hook.url, webhook_timeout_s=0.2, webhook_retries=1), "sess", backoff_s=0.01)
        sink.send([alert(1)])
        assert wait_for(lambda: sink.counts().get("failed", 0) == 1)
        assert sink.counts() == {"retried": 1, "failed": 1}
        assert wait_for(lambda: len(hook.bodies) == 2) and hook.answered == 0  # the first try and one retry
        sink.close()


@pytest.mark.parametrize("status", [500, 404, 302])
def test_an_answer_other_than_2xx_is_a_failure(status: int) -> None:
    with receiver() as elsewhere, receiver(status, location=elsewhere.url) as hook:
        sink = WebhookSink(service(hook.url, webhook_retries=1), "sess", backoff_s=0.01)
        sink.send([alert(1)])
        assert wait_for(lambda: sink.counts().get("failed", 0) == 1)
        sink.close()
        assert len(hook.bodies) == 2
        assert elsewhere.bodies == []  # a redirect is not followed
    assert sink.counts() == {"retried": 1, "failed": 1}


def test_a_full_queue_drops_the_oldest() -> None:
    with receiver(hold=True) as hook:
        sink = WebhookSink(service(hook.url, webhook_queue=2, webhook_timeout_s=30), "sess")
        sink.send([alert(1)])
        assert wait_for(lambda: len(hook.bodies) == 1)  # the first one is in flight, held by the receiver
        sink.send([alert(2), alert(3), alert(4), alert(5)])  # returns at once: the queue holds 2
        assert sink.counts() == {"dropped": 2}
        hook.release()
        assert wait_for(lambda: sink.counts().get("delivered", 0) == 3)
        assert [b["track_id"] for b in hook.bodies] == [1, 4, 5]
        sink.close()
    assert sink.counts() == {"dropped": 2, "delivered": 3}


def test_close_drops_what_the_grace_does_not_cover() -> None:
    with receiver(hold=True) as hook:
        sink = WebhookSink(service(hook.url, webhook_timeout_s=30), "sess", close_grace_s=0.1)
        sink.send([alert(1), alert(2), alert(3)])
        assert wait_for(lambda: len(hook.bodies) == 1)
        sink.close()  # returns after its grace, with the first POST still held by the receiver
        assert hook.answered == 0
        assert sink.counts() == {"dropped": 2}
        sink.send([alert(4)])  # after close: dropped at once, never sent
        assert sink.counts() == {"dropped": 3}
        hook.release()
        assert wait_for(lambda: sink.counts().get("delivered", 0) == 1)
    assert [b["track_id"] for b in hook.bodies] == [1]


# ---- streams lost and recovered ------------------------------------------------------------------------------------
def health(state: StreamState, reconnects: int = 0, error: str | None = None) -> StreamHealth:
    return StreamHealth("cam", state, 25.0, 20.0, 0, reconnects, error)


def test_streams_lost_and_recovered() -> None:
    with receiver() as hook:
        sink = WebhookSink(service(hook.url), "sess")
        sink.send([StreamInfo("cam", "rtsp://cam/1", "rtsp"), health(StreamState.STARTING), health(StreamState.LIVE)])
        sink.send([health(StreamState.RECONNECTING, error="connection refused")])
        sink.send([health(StreamState.RECONNECTING, error="connection refused")])  # still lost: said once
        sink.send([health(StreamState.LIVE, reconnects=1)])
        sink.send([health(StreamState.LIVE, reconnects=2)])  # dropped and back between two reports
        sink.send([health(StreamState.FAILED, reconnects=2, error="gone for good")])
        sink.send([StreamInfo("cam", "rtsp://cam/1", "rtsp"), health(StreamState.LIVE)])  # added again: a new stream
        sink.send([health(StreamState.ENDED)])  # stopped: not lost
        assert wait_for(lambda: sink.counts().get("delivered", 0) == 5)
        sink.close()
    got = [(b["event"], b["state"], b["reconnects"], b["last_error"]) for b in hook.bodies]
    assert got == [
        ("stream_lost", "reconnecting", 0, "connection refused"),
        ("stream_recovered", "live", 1, None),
        ("stream_lost", "reconnecting", 2, None),
        ("stream_recovered", "live", 2, None),
        ("stream_lost", "failed", 2, "gone for good"),
    ]
    assert {(b["schema"], b["session_id"], b["stream_id"]) for b in hook.bodies} == {(SCHEMA, "sess", "cam")}
    assert all(isinstance(b["t"], float) for b in hook.bodies)


# ---- the flag ------------------------------------------------------------------------------------------------------
def test_the_webhook_flag_adds_to_the_configured_urls(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("service:\n  webhooks: [http://127.0.0.1:9000/a]\n")
    args = run_stream.parse_args(
        ["demo", "--config", str(config), "--webhook", "http://127.0.0.1:9001/b", "--webhook", "https://hooks.test/c"]
    )
    settings = run_stream.resolve_settings(args)
    assert settings.service.webhooks == ("http://127.0.0.1:9000/a", "http://127.0.0.1:9001/b", "https://hooks.test/c")
    assert run_stream.resolve_settings(run_stream.parse_args(["demo"])).service.webhooks == Settings().service.webhooks
    for bad in ("hooks.test/c", "ftp://hooks.test/c", "http://"):
        with pytest.raises(SystemExit) as exit_info:
            run_stream.parse_args(["demo", "--webhook", bad])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "--webhook" in error and "http://" in error
