"""The detector's HTTP service (stream/service.py): a real uvicorn on 127.0.0.1 inside a private network namespace,
driven with httpx — the token, the control API over a real RTSP camera, every bad input followed by a good
request, the service URL in the store, shutdown, and `run_stream.py --serve`."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from fastapi import APIRouter, Depends

from model.engines import build_engine
from model.weights import LoadedModel
from stream.config import ServiceSettings
from stream.detector import Detector
from stream.service.app import Extension, Service, ServiceError, check_bind, default_extensions
from stream.service.auth import token_guard
from stream.store import open_reader, open_writer
from tests import media
from tests.helpers import PIN_ENGINE
from tests.netns import private_network, rtsp_server
from tests.pipeline_run import detector_settings
from tests.test_store_schema import schema_of

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


# ---- serving a detector: shared with the other service tests ------------------------------------------------------
@dataclass
class Served:
    detector: Detector
    service: Service
    client: httpx.Client  # carries the token when there is one
    url: str


@contextlib.contextmanager
def serving(
    loaded: LoadedModel,
    db: Path,
    cache_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    token: str | None = None,
    extensions: tuple[Extension, ...] = (),
    full: bool = False,
) -> Iterator[Served]:
    """A detector (onnxruntime, window 10) whose loop runs on a thread, served on 127.0.0.1 at a free port; stops
    both, always. Call it inside a private network namespace. `full`: with the extensions `run_stream.py --serve`
    runs (WHIP and metrics) instead of `extensions`."""
    settings = detector_settings(db, {"model.cpu_engine": "onnxruntime", **(overrides or {})})
    settings = replace(settings, service=replace(settings.service, port=0, token=token))
    engine = build_engine(loaded, "cpu", "onnxruntime", cache_dir)
    with Detector(settings, loaded=loaded, engine=engine) as detector:
        loop = threading.Thread(target=detector.run, kwargs={"serve": True}, name="loop", daemon=True)
        loop.start()
        if full:
            extensions = tuple(default_extensions(detector, settings.service))
        service = Service(detector, settings.service, extensions)
        try:
            url = service.start()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                yield Served(detector, service, client, url)
        finally:
            service.stop()
            detector.stop()
            loop.join(30)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll until `condition()` is truthy; its value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)
    return value


def one_line_problem(response: httpx.Response, status: int) -> str:
    """The response is `status` with a JSON `detail` of one line (never a traceback); the line."""
    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail and "Traceback" not in detail, detail
    return detail


# ---- fixtures --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def camera_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s of one face drifting right, H.264 without B-frames and a key frame every second, as a camera sends."""
    path = tmp_path_factory.mktemp("service-camera") / "face.mp4"
    scene = media.one_face()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"g": "30", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = media.WIDTH, media.HEIGHT, "yuv420p"
        for index in range(150):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(scene(index), format="bgr24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def served(
    private_netns: None, seed_model: LoadedModel, engine_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("service-api") / "runs" / "deepfake.db"
    with serving(seed_model, db, engine_cache, {"sources.open_timeout_s": 5}, token=TOKEN) as running:
        yield running


# ---- the token ---------------------------------------------------------------------------------------------------
def test_every_route_but_healthz_needs_the_token(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as anonymous:
        assert anonymous.get("/healthz").json() == {"ok": True}
        for method, path in [("GET", "/api/streams"), ("GET", "/openapi.json"), ("POST", "/api/uploads")]:
            response = anonymous.request(method, path, content=b"x" if method == "POST" else None)
            assert "bearer token" in one_line_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.get("/api/streams", headers={"Authorization": "Bearer not-it"})
        one_line_problem(wrong, 401)
        assert anonymous.get("/api/streams", headers=AUTH).status_code == 200  # then a good request
    schema = served.client.get("/openapi.json").json()
    assert {
        "/api/streams",
        "/api/streams/{stream_id}",
        "/api/faces",
        "/api/uploads",
        "/api/uploads/{upload_id}",
    } <= set(schema["paths"])
    assert "/docs" not in schema["paths"] and served.client.get("/docs").status_code == 404  # no CDN-loading pages


# ---- the control API over a real RTSP camera ---------------------------------------------------------------------
def test_a_camera_added_through_the_api_goes_live_and_stopping_it_keeps_its_scores(
    served: Served, camera_video: Path
) -> None:
    client = served.client
    with rtsp_server(camera_video) as url:
        added = client.post("/api/streams", json={"source": url, "name": "door"})
        assert added.status_code == 202, added.text  # answered at once; opened elsewhere
        assert added.json()["stream_id"] == "door" and added.json()["kind"] == "rtsp"
        assert added.json()["state"] == "starting"

        def live() -> dict | None:
            stream = client.get("/api/streams/door").json()
            return stream if stream["state"] == "live" and stream["frames_read"] > 10 else None

        stream = wait_for(live, 30, "the camera to go live with frames")
        assert stream["fps_in"] > 0 and stream["source"] == url
        assert any(s["stream_id"] == "door" for s in client.get("/api/streams").json())

        faces = wait_for(lambda: client.get("/api/faces", params={"stream": "door"}).json(), 20, "a face")
        assert faces[0]["stream_id"] == "door" and faces[0]["state"] == "live"
        session = served.detector.session_id
        with open_reader(served.detector.settings.store.db) as reader:
            wait_for(lambda: reader.scores(session, "door", faces[0]["track_id"]), 20, "scores in the store")

        taken = client.post("/api/streams", json={"source": url, "name": "door"})
        assert "already running" in one_line_problem(taken, 409)

        stopped = client.delete("/api/streams/door")
        assert stopped.status_code == 200 and stopped.json()["state"] == "ended", stopped.text
    with open_reader(served.detector.settings.store.db) as reader:
        kept = len(reader.scores(session, "door", faces[0]["track_id"]))
        [row] = [s for s in reader.streams(session) if s.stream_id == "door"]
    assert kept > 0 and row.kind == "rtsp" and row.health is not None and row.health.state == "ended"
    assert client.get("/api/streams/door").json()["state"] == "ended"  # listed with its final health
    assert client.get("/api/faces", params={"stream": "door"}).json() == []
    # A name whose stream has ended may be used again.
    again = client.post("/api/streams", json={"source": "demo", "name": "door"})
    assert again.status_code == 202, again.text
    wait_for(lambda: client.get("/api/streams/door").json()["state"] == "live", 30, "the demo to go live")
    assert client.delete("/api/streams/door").status_code == 200


def test_bad_requests_get_one_line_and_the_service_keeps_working(served: Served) -> None:
    client = served.client
    bad: list[tuple[httpx.Response, int, str]] = [
        # The source policy (tests/test_source_policy.py): no media_dir, so no files; webcams off by default.
        (client.post("/api/streams", json={"source": "/no/such/video.mp4"}), 403, "no service.media_dir"),
        (client.post("/api/streams", json={"source": "ftp://host/cam"}), 400, "unknown source scheme"),
        (client.post("/api/streams", json={"source": "/dev/video97"}), 403, "service.api_sources"),
        (client.post("/api/streams", json={"source": "/" + "a" * 2039}), 400, "too long"),
        (client.post("/api/streams", json={"source": ""}), 422, "source"),
        (client.post("/api/streams", json={"source": "demo", "name": "../etc"}), 422, "name"),
        (client.post("/api/streams", json={"source": "demo", "surprise": 1}), 422, "surprise"),
        (client.post("/api/streams", content=b"{not json", headers={"content-type": "application/json"}), 422, ""),
        (client.delete("/api/streams/nobody"), 404, "no stream 'nobody'"),
        (client.get("/api/streams/nobody"), 404, "no stream"),
        (client.get("/api/uploads/upload-00000000"), 404, "no upload"),
        (client.get("/api/faces", params={"stream": "a b"}), 422, "stream"),
    ]
    for response, status, words in bad:
        assert words in one_line_problem(response, status)
        assert client.get("/api/streams").status_code == 200  # each followed by a good request
    # A camera that cannot be reached: accepted (202, `starting`), then `failed` with the reason.
    refused = client.post("/api/streams", json={"source": "rtsp://127.0.0.1:1/cam", "name": "nobody-home"})
    assert refused.status_code == 202 and refused.json()["state"] == "starting", refused.text
    failed = wait_for(
        lambda: (s := client.get("/api/streams/nobody-home").json())["state"] == "failed" and s,
        30,
        "the unreachable camera to fail",
    )
    assert "refused" in failed["last_error"] and "\n" not in failed["last_error"], failed
    added = client.post("/api/streams", json={"source": "demo", "name": "after-bad"})
    assert added.status_code == 202, added.text
    wait_for(lambda: client.get("/api/streams/after-bad").json()["state"] == "live", 30, "the demo to go live")
    assert client.delete("/api/streams/after-bad").json()["state"] == "ended"


# ---- the service itself ------------------------------------------------------------------------------------------
def test_a_non_loopback_bind_without_a_token_refuses_in_one_line() -> None:
    with pytest.raises(ServiceError) as refused:
        check_bind(ServiceSettings(host="0.0.0.0", port=0))
    assert "without a token" in str(refused.value) and "\n" not in str(refused.value)
    check_bind(ServiceSettings(host="0.0.0.0", port=0, token="t"))  # with a token it may
    check_bind(ServiceSettings(host="127.0.0.1", port=0))


def test_the_url_is_in_the_session_row_and_the_token_nowhere(served: Served) -> None:
    db = served.detector.settings.store.db
    with open_reader(db) as reader:
        [session] = [s for s in reader.sessions() if s.session_id == served.detector.session_id]
        assert session.service_url == served.url and re.fullmatch(r"http://127\.0\.0\.1:\d+/", served.url)
        assert reader.session_config(session.session_id)["service"]["token"] == "<set>"
    served.detector.writer.commit()
    for path in Path(db).parent.glob("deepfake.db*"):
        assert TOKEN.encode() not in path.read_bytes()


def test_a_service_waiting_for_streams_keeps_its_session_alive(served: Served) -> None:
    """Nothing but health timings happen while no stream runs: the session's last_active still moves, so the
    dashboard shows this detector as running and its controls as available."""
    db, sid = served.detector.settings.store.db, served.detector.session_id

    def last_active() -> float:
        with open_reader(db) as reader:
            return next(s.last_active for s in reader.sessions() if s.session_id == sid)

    first = last_active()
    assert wait_for(lambda: last_active() > first + 0.5, 10, "the session's last_active to move")


def test_an_older_store_gets_the_service_url_column_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "v3.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(f"{schema_of(3)}PRAGMA user_version=3;")
        conn.execute(
            "INSERT INTO sessions VALUES "
            "('old', 1.0, 2.0, 2.0, 'ck.pt', 1, 20, 1, 'mean', 0.5, 0.1, 'cpu', 'ort', '[]')"
        )
    with open_reader(db) as reader:  # read as it is
        assert [(s.session_id, s.service_url) for s in reader.sessions()] == [("old", None)]
    with open_writer(db, retention_days=None) as writer:
        writer.set_service_url("old", "http://127.0.0.1:8080/")
    with open_reader(db) as reader:
        assert [(s.session_id, s.service_url) for s in reader.sessions()] == [("old", "http://127.0.0.1:8080/")]


class PingExtension:
    """A test extension: one guarded route, and a record of where its `aclose` ran."""

    def __init__(self, token: str | None) -> None:
        self.router = APIRouter(dependencies=[Depends(token_guard(token))])
        self.closed_on: str | None = None
        self.router.add_api_route("/ext/ping", self.ping)

    async def ping(self) -> dict[str, str]:
        return {"pong": threading.current_thread().name}

    async def aclose(self) -> None:
        self.closed_on = threading.current_thread().name


def test_extensions_are_routed_and_closed_on_the_service_loop(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path
) -> None:
    extension = PingExtension(TOKEN)
    with serving(seed_model, tmp_path / "s.db", engine_cache, token=TOKEN, extensions=(extension,)) as running:
        assert running.client.get("/ext/ping").json() == {"pong": "service"}
        with httpx.Client(base_url=running.url) as anonymous:
            one_line_problem(anonymous.get("/ext/ping"), 401)
        assert extension.closed_on is None
        running.service.stop()
        assert extension.closed_on == "service"  # the service's own thread and loop
        with pytest.raises(httpx.ConnectError):
            httpx.get(running.url + "healthz", timeout=5)
        running.service.stop()  # twice is safe


def test_a_port_in_use_is_one_line(seed_model: LoadedModel, engine_cache: Path, tmp_path: Path) -> None:
    with serving(seed_model, tmp_path / "s.db", engine_cache) as running:
        port = int(running.url.rsplit(":", 1)[1].strip("/"))
        taken = Service(running.detector, ServiceSettings(port=port))
        with pytest.raises(ServiceError, match=rf"cannot listen on 127\.0\.0\.1:{port}: "):
            taken.start()
        assert running.client.get("/healthz").status_code == 200


# ---- the command line ----------------------------------------------------------------------------------------------
def test_serve_with_no_source_runs_until_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, "--serve", "0", "--window", "10"]
    process = subprocess.Popen(
        [*command, "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "DEEPFAKE_STREAM_TOKEN": TOKEN},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "no service line within 120 s"
        line = process.stdout.readline()
        match = re.fullmatch(r"service: (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, line
        url = match.group(1)
        assert httpx.get(url + "healthz").json() == {"ok": True}
        assert httpx.get(url + "api/streams").status_code == 401  # the token came from the environment
        added = httpx.post(url + "api/streams", json={"source": "demo"}, headers=AUTH, timeout=30)
        assert added.status_code == 202 and added.json()["stream_id"] == "demo", added.text
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "demo:" in stdout
    with open_reader(db) as reader:
        session = reader.latest_session()
        assert session is not None and session.service_url == url and session.ended_at is not None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--serve", "0.0.0.0:0"], "without a token"),
        (["--serve", "99999"], "--serve: must be [HOST:]PORT"),
        (["--serve", "0", "--dashboard-only"], "not with --dashboard-only"),
        ([], "give at least one SOURCE"),
    ],
)
def test_serve_usage_mistakes_are_one_line(args: list[str], words: str, tmp_path: Path) -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "run_stream.py"), *args, "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if key != "DEEPFAKE_STREAM_TOKEN"},
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and words in line, line
    assert time.monotonic() - began < 60  # refused before any model work
