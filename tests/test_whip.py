"""WHIP ingest (stream/service/whip.py) against real peers: aiortc publishers send a test-made video over WHIP to a real
uvicorn server backed by a real Detector (ONNX Runtime engine, MediaPipe, SQLite), and every bad input gets its
status and one-line reason while a good request after it still works.

Layer 4 of DESIGN.md: inside a private network namespace (tests/netns.py) with a veth pair, because aioice leaves
loopback out of its ICE candidates. The handoff between the asyncio loop and the capture thread is tested alone in
tests/test_whip_frames.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import AudioStreamTrack
from fastapi import FastAPI

from model.engines import build_engine
from model.weights import LoadedModel
from stream.config import ServiceSettings
from stream.detector import Detector
from stream.records import AnnotatedFrame, Event, FaceUpdate, StreamHealth, StreamState, WindowScore
from stream.service.auth import token_guard
from stream.service.whip import WhipIngest
from stream.store import open_reader
from tests import media
from tests.doubles import RecordingSink
from tests.netns import add_veth_pair, private_network
from tests.pipeline_run import detector_settings

TOKEN = "whip-test-token"
# Short enough that a vanished publisher is noticed within the test, long enough for a busy 2-core machine.
READ_TIMEOUT_S = 2.0
OPEN_TIMEOUT_S = 6.0
WAIT_S = 60.0
CLOSED = ("closed", "failed")  # how a peer sees a connection its far end closed


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    """One private namespace for the module, with a veth pair so the WebRTC peers have non-loopback addresses."""
    with private_network():
        add_veth_pair()
        yield


# ---- a real service ------------------------------------------------------------------------------------------------
class TimedSink(RecordingSink):
    """Records every event, and when the first event of each kind reached it for each stream (monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.first_at: dict[tuple[type, str], float] = {}

    def send(self, events: Sequence[Event]) -> None:
        now = time.monotonic()
        for event in events:
            if isinstance(stream_id := getattr(event, "stream_id", None), str):
                self.first_at.setdefault((type(event), stream_id), now)
        super().send(events)


@dataclass
class Service:
    url: str
    detector: Detector
    sink: TimedSink
    db: Path
    video: Path

    def health(self, name: str) -> StreamHealth | None:
        return next((h for h in self.detector.health() if h.stream_id == name), None)

    def first(self, kind: type, name: str) -> float | None:
        """When the loop first sent an event of this kind for this stream (monotonic), or None."""
        return self.sink.first_at.get((kind, name))


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` on uvicorn at a free loopback port, on its own thread and event loop; stopped on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive(), "uvicorn did not stop"


def whip_app(detector: Detector, token: str | None = None) -> FastAPI:
    """The WHIP router on its own, the way the service mounts an extension (aclose at shutdown)."""
    ingest = WhipIngest(detector, ServiceSettings(token=token), token_guard(token))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await ingest.aclose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(ingest.router)
    return app


@pytest.fixture(scope="module")
def service(
    private_netns: None, tmp_path_factory: pytest.TempPathFactory, seed_model: LoadedModel, engine_cache: Path
) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("whip")
    video = media.write_video(folder / "face.mp4", media.render(media.one_face(), 60))
    settings = detector_settings(
        folder / "deepfake.db",
        {"sources.read_timeout_s": READ_TIMEOUT_S, "sources.open_timeout_s": OPEN_TIMEOUT_S},
    )
    engine = build_engine(seed_model, "cpu", "onnxruntime", engine_cache)
    sink = TimedSink()
    detector = Detector(settings, loaded=seed_model, engine=engine, sinks=[sink])
    loop = threading.Thread(target=detector.run, kwargs={"serve": True}, name="detector-loop")
    loop.start()
    try:
        with serving(whip_app(detector)) as url:
            yield Service(url, detector, sink, settings.store.db, video)
    finally:
        detector.stop()
        loop.join(30)
        detector.close()


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


# ---- a publisher ---------------------------------------------------------------------------------------------------
@dataclass
class Publisher:
    pc: RTCPeerConnection
    player: MediaPlayer | None
    location: str
    posted_at: float  # monotonic: the POST began ...
    answered_at: float  # ... and its answer came

    async def close(self) -> None:
        await self.pc.close()
        if self.player is not None and self.player.video is not None:
            self.player.video.stop()


async def offer(video: Path | None, audio: bool = False) -> tuple[RTCPeerConnection, MediaPlayer | None]:
    """A sending peer with the video (looped) and, if asked, a silent audio track; its offer set and gathered."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(video), loop=True) if video is not None else None
    if player is not None:
        pc.addTransceiver(player.video, direction="sendonly")
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, player


async def publish(base: str, name: str, video: Path, audio: bool = False, token: str | None = None) -> Publisher:
    pc, player = await offer(video, audio)
    headers = {"Content-Type": "application/sdp", **({"Authorization": f"Bearer {token}"} if token else {})}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        posted_at = time.monotonic()
        response = await client.post(f"/whip/{name}", content=pc.localDescription.sdp, headers=headers)
        answered_at = time.monotonic()
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/sdp")
    location = response.headers["location"]
    assert location.startswith(f"/whip/{name}/")
    await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    return Publisher(pc, player, location, posted_at, answered_at)


async def delete(base: str, location: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return await client.delete(location, headers=headers)


async def until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def frames_read(service: Service, name: str) -> int:
    """The frames a live stream has read, as of the loop's last health snapshot (0 while it has none)."""
    health = service.health(name)
    return health.frames_read if health is not None and health.state == StreamState.LIVE else 0


def ended(service: Service, name: str) -> StreamHealth | None:
    health = service.health(name)
    return health if health is not None and health.state not in (StreamState.STARTING, StreamState.LIVE) else None


# ---- tests against the service -------------------------------------------------------------------------------------
def test_a_published_video_is_scored_into_the_store_and_delete_ends_it_cleanly(service: Service) -> None:
    name = "aiortc"

    async def scenario() -> dict[str, float]:
        publisher = await publish(service.url, name, service.video, audio=True)  # audio: accepted, ignored
        try:
            await until(lambda: service.first(WindowScore, name), WAIT_S, "a window score")
            # From the POST: its answer, the first frame through the loop, the first face crop, the first score.
            marks = {"answer": publisher.answered_at - publisher.posted_at}
            for what, kind in (
                ("first frame", AnnotatedFrame),
                ("first face", FaceUpdate),
                ("first score", WindowScore),
            ):
                at = service.first(kind, name)
                assert at is not None, what
                marks[what] = at - publisher.posted_at
            live = lambda: (h := service.health(name)) is not None and h.state == StreamState.LIVE  # noqa: E731
            await until(live, WAIT_S, "the stream's health to say live")
            # The page's view: the loop publishes its live faces with their rolling scores every health interval.
            async with httpx.AsyncClient(base_url=service.url) as client:
                seen: list[dict] = []

                async def rolling_score_shown() -> bool:
                    seen[:] = [(await client.get(f"/whip/{name}/faces")).json()]
                    return any(face["rolling_p_fake"] is not None for face in seen[0]["faces"])

                deadline = time.monotonic() + WAIT_S
                while not await rolling_score_shown():
                    assert time.monotonic() < deadline, seen
                    await asyncio.sleep(0.1)
            assert seen[0]["stream_id"] == name and seen[0]["warning"]  # the seeded model is uncalibrated
            response = await delete(service.url, publisher.location)
            assert response.status_code == 200, response.text
            await until(lambda: publisher.pc.connectionState in CLOSED, 10, "the publisher's connection to close")
        finally:
            await publisher.close()
        return marks

    marks = asyncio.run(scenario())
    print(
        "\nWHIP connect (aiortc publisher, 320x240 30 fps, window 10): "
        + ", ".join(f"{what} {seconds * 1000:.0f} ms" for what, seconds in marks.items())
    )
    health = service.health(name)
    assert health is not None and health.state == StreamState.ENDED and health.last_error is None, health
    assert health.reconnects == 0
    with open_reader(service.db) as reader:
        session = reader.latest_session()
        assert session is not None
        streams = {s.stream_id: s for s in reader.streams(session.session_id)}
        assert streams[name].kind == "whip" and streams[name].health is not None
        assert streams[name].health.state == StreamState.ENDED
        faces = reader.faces(session.session_id, name)
        assert faces and all(face.state == "gone" for face in faces)
        scored = [s for face in faces for s in reader.scores(session.session_id, name, face.track_id)]
    assert scored, "no window scores of the published faces in the store"
    assert all(0.0 <= s.p_fake <= 1.0 for s in scored)
    # The publisher is gone from the ingest: its name can be published again.
    asyncio.run(publish_and_delete(service.url, name, service.video))


async def publish_and_delete(base: str, name: str, video: Path, token: str | None = None) -> None:
    publisher = await publish(base, name, video, token=token)
    try:
        response = await delete(base, publisher.location, token)
        assert response.status_code == 200, response.text
    finally:
        await publisher.close()


def test_every_bad_request_gets_its_status_and_a_good_one_still_works(service: Service) -> None:
    base = service.url

    async def scenario() -> None:
        sdp = {"Content-Type": "application/sdp"}
        live = await publish(base, "taken", service.video)
        try:
            await until(lambda: frames_read(service, "taken") > 0, WAIT_S, "frames from the live publisher")
            audio_only, _ = await offer(None, audio=True)
            video_pc, player = await offer(service.video)
            cases = [
                ("garbage", "post", "/whip/cam", "garbage", sdp, 400),
                ("empty", "post", "/whip/cam", "", sdp, 400),
                ("audio only", "post", "/whip/cam", audio_only.localDescription.sdp, sdp, 400),
                ("json", "post", "/whip/cam", video_pc.localDescription.sdp, {"Content-Type": "application/json"}, 415),
                ("no type", "post", "/whip/cam", video_pc.localDescription.sdp, {}, 415),
                ("too large", "post", "/whip/cam", "v=0\r\n" + "a=x\r\n" * 20_000, sdp, 413),
                ("bad name", "post", "/whip/..%20x", video_pc.localDescription.sdp, sdp, 400),
                ("live name", "post", "/whip/taken", video_pc.localDescription.sdp, sdp, 409),
                ("unknown session", "delete", "/whip/taken/not-its-id", None, {}, 404),
                ("unknown stream", "delete", "/whip/nobody/abc", None, {}, 404),
                ("faces of nothing", "get", "/whip/nobody/faces", None, {}, 404),
            ]
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for what, method, path, body, headers, status in cases:
                    response = await client.request(method, path, content=body, headers=headers)
                    assert response.status_code == status, (what, response.status_code, response.text)
                    detail = response.json()["detail"]
                    assert isinstance(detail, str) and detail and "\n" not in detail, (what, detail)
                    assert "Traceback" not in response.text
            for pc in (audio_only, video_pc):
                await pc.close()
            if player is not None and player.video is not None:
                player.video.stop()
            # The live publisher was not disturbed, and a good request still succeeds.
            before = frames_read(service, "taken")
            await until(lambda: frames_read(service, "taken") > before, WAIT_S, "more frames from the live publisher")
            assert (h := service.health("taken")) is not None and h.state == StreamState.LIVE
            await publish_and_delete(base, "after-bad", service.video)
        finally:
            await delete(base, live.location)
            await live.close()

    asyncio.run(scenario())


def test_a_token_guards_publishing_and_ending_when_set(service: Service) -> None:
    with serving(whip_app(service.detector, token=TOKEN)) as base:

        async def scenario() -> None:
            pc, player = await offer(service.video)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                    response = await client.post(
                        "/whip/guarded",
                        content=pc.localDescription.sdp,
                        headers={"Content-Type": "application/sdp", **headers},
                    )
                    assert response.status_code == 401, response.text
                    assert "token" in response.json()["detail"]
                assert (await client.get("/")).status_code == 200  # the page itself loads without a token
                # With a token, any origin may call (the token is the gate).
                preflight = await client.options("/whip/guarded", headers={"Origin": "https://example.com"})
                assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
            await pc.close()
            if player is not None and player.video is not None:
                player.video.stop()
            publisher = await publish(base, "guarded", service.video, token=TOKEN)
            try:
                assert (await delete(base, publisher.location)).status_code == 401
                assert (await delete(base, publisher.location, TOKEN)).status_code == 200
            finally:
                await publisher.close()

        asyncio.run(scenario())


def test_cors_preflight_and_the_publish_page(service: Service) -> None:
    with httpx.Client(base_url=service.url) as client:
        for path in ("/whip/cam", "/whip/cam/some-session"):
            response = client.options(path, headers={"Origin": "http://127.0.0.1:9999"})
            assert response.status_code == 204
            assert response.headers["access-control-allow-origin"] == "http://127.0.0.1:9999"
            assert set(response.headers["access-control-allow-methods"].replace(" ", "").split(",")) == {
                "POST",
                "DELETE",
                "OPTIONS",
            }
            allowed = response.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed
            assert "location" in response.headers["access-control-expose-headers"].lower()
        # Without a token, a page from elsewhere on the web may not drive the loopback service.
        foreign = client.options("/whip/cam", headers={"Origin": "https://example.com"})
        assert "access-control-allow-origin" not in foreign.headers
        page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "const ICE_SERVERS = [];" in page.text and "getUserMedia" in page.text


PUBLISHER_SCRIPT = """
import asyncio, sys
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

async def main(url, video):
    player = MediaPlayer(video, loop=True)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(player.video, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(url, content=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"})
    answer.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    print("PUBLISHING", flush=True)
    await asyncio.Event().wait()  # until killed: no DELETE, no DTLS close

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_a_publisher_that_vanishes_is_marked_lost_and_freed(service: Service) -> None:
    name = "vanishing"
    process = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER_SCRIPT, f"{service.url}/whip/{name}", str(service.video)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        assert line == "PUBLISHING", process.stderr.read().decode() if process.stderr else line
        wait_for(lambda: frames_read(service, name) > 10, WAIT_S, "frames")
        process.send_signal(signal.SIGKILL)  # gone at once: no DELETE, no DTLS close_notify
        process.wait(10)
        began = time.monotonic()
        wait_for(lambda: ended(service, name), READ_TIMEOUT_S + 15, "the vanished publisher to be marked lost")
        noticed = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    health = ended(service, name)
    assert health is not None and health.state == StreamState.LOST and health.reconnects == 0
    assert health.last_error is not None and "lost" in health.last_error, health
    assert noticed < READ_TIMEOUT_S + 5
    # The publish page polls this: it says the stream is lost and why.
    seen = httpx.get(f"{service.url}/whip/{name}/faces", timeout=10).json()
    assert seen["state"] == "lost" and seen["last_error"] == health.last_error, seen
    # Freed: the name is no longer taken, and the frames it sent stay counted.
    assert health.frames_read > 10
    asyncio.run(publish_and_delete(service.url, name, service.video))


def test_closing_the_connection_without_delete_ends_the_stream(service: Service) -> None:
    name = "closed-early"

    async def scenario() -> None:
        publisher = await publish(service.url, name, service.video)
        try:
            await until(lambda: frames_read(service, name) > 5, WAIT_S, "frames")
        finally:
            await publisher.close()  # DTLS close_notify, but no DELETE
        await until(lambda: ended(service, name), READ_TIMEOUT_S + 10, "the stream to end")

    asyncio.run(scenario())
    health = ended(service, name)
    assert health is not None and health.state == StreamState.LOST and health.reconnects == 0
    assert health.last_error is not None and "lost" in health.last_error, health


def test_a_stream_stopped_in_the_detector_closes_its_publisher(service: Service) -> None:
    name = "stopped-here"

    async def scenario() -> None:
        publisher = await publish(service.url, name, service.video)
        try:
            await until(lambda: frames_read(service, name) > 5, WAIT_S, "frames")
            await asyncio.wrap_future(service.detector.pipeline.remove_source(name))  # as the control API does
            await until(lambda: publisher.pc.connectionState in CLOSED, 15, "the ingest to close the connection")
            # The session is gone: DELETE on it is unknown now.
            assert (await delete(service.url, publisher.location)).status_code == 404
        finally:
            await publisher.close()

    asyncio.run(scenario())
    health = service.health(name)
    assert health is not None and health.state == StreamState.ENDED and health.last_error is None
