"""The service's caps and queues (stream/service/caps.py): over a cap a 429 with Retry-After naming the config key;
source opens that hang (a port that accepts and never answers) never hold up other requests; uploads queue with
their position; a slow upload is cut off; ended streams leave /api/streams and /metrics after `ended_keep_s`. A real
service inside a private network namespace, driven with httpx, raw sockets and aiortc peers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection

from model.weights import LoadedModel
from stream.service.schemas import ApiError
from stream.service.uploads import Pace
from stream.store import open_reader
from tests import media
from tests.netns import private_network, silent_port
from tests.test_service_api import one_line_problem, serving, wait_for
from tests.test_service_uploads import OCTET
from tests.test_whip import offer

HANG_S = 20.0  # sources.open_timeout_s while opens hang: every check below happens long before it


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def over_cap(response: httpx.Response, key: str) -> str:
    """A 429 with Retry-After whose one line names `service.KEY`."""
    line = one_line_problem(response, 429)
    assert f"service.{key}" in line, line
    assert int(response.headers["retry-after"]) > 0
    return line


def state_of(client: httpx.Client, stream_id: str) -> str:
    return client.get(f"/api/streams/{stream_id}").json()["state"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("caps-media")
    return {
        "long": media.write_video(folder / "long.mp4", media.render(media.one_face(), 240)),
        "short": media.write_video(folder / "short.mp4", media.render(media.one_face(), 30)),
    }


# ---- opening sources ----------------------------------------------------------------------------------------------
def test_hanging_opens_never_hold_up_other_requests_and_are_capped(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path
) -> None:
    caps = {"service.max_opening": 9, "service.max_streams": 10, "sources.open_timeout_s": HANG_S}
    with serving(seed_model, tmp_path / "deepfake.db", engine_cache, caps) as served, silent_port() as port:
        client = served.client
        assert client.post("/api/streams", json={"source": "demo", "name": "first"}).status_code == 202
        wait_for(lambda: state_of(client, "first") == "live", 30, "the demo to go live")
        hanging = [f"hang{i}" for i in range(9)]  # more than asyncio's default pool has workers here (cpu + 4)
        for name in hanging:
            added = client.post("/api/streams", json={"source": f"rtsp://127.0.0.1:{port}/{name}", "name": name})
            assert added.status_code == 202, added.text  # answered while the earlier ones still hang
            assert added.json()["state"] == "starting"
        assert client.get("/api/uploads").status_code == 200
        listed = {s["stream_id"]: s["state"] for s in client.get("/api/streams").json()}
        assert all(listed[name] == "starting" for name in hanging), listed  # answered before any open timed out
        taken = client.post("/api/streams", json={"source": "demo", "name": "hang0"})
        assert "already running" in one_line_problem(taken, 409)

        one_more = {"source": f"rtsp://127.0.0.1:{port}/more", "name": "more"}
        over_cap(client.post("/api/streams", json=one_more), "max_streams")  # 1 live + 9 opening
        assert client.delete("/api/streams/first").json()["state"] == "ended"
        over_cap(client.post("/api/streams", json=one_more), "max_opening")  # 9 opening
        assert all(state_of(client, name) == "starting" for name in hanging)
        assert client.get("/healthz").json() == {"ok": True}
        stopped = client.delete("/api/streams/hang8")  # stopped while opening: it will never run
        assert stopped.status_code == 200 and stopped.json()["state"] == "ended", stopped.text

        # Then each fails with the reason, and the pool takes new opens again.
        def all_failed() -> bool:
            return all(state_of(client, name) == "failed" for name in hanging[:-1])

        wait_for(all_failed, HANG_S + 30, "the hanging opens to time out")
        reason = client.get("/api/streams/hang0").json()["last_error"]
        assert reason and "\n" not in reason
        assert state_of(client, "hang8") == "ended"
        assert client.post("/api/streams", json={"source": "demo", "name": "after"}).status_code == 202
        wait_for(lambda: state_of(client, "after") == "live", 30, "the demo to go live")


# ---- WHIP publishers ----------------------------------------------------------------------------------------------
def test_whip_sessions_are_capped_from_the_post_and_an_unconnected_one_is_closed(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path, videos: dict[str, Path]
) -> None:
    caps = {"service.max_publishers": 2, "sources.open_timeout_s": 3}
    with serving(seed_model, tmp_path / "deepfake.db", engine_cache, caps, full=True) as served:

        async def post(name: str) -> httpx.Response:
            pc, player = await offer(videos["short"])
            try:
                async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
                    headers = {"Content-Type": "application/sdp"}
                    return await client.post(f"/whip/{name}", content=pc.localDescription.sdp, headers=headers)
            finally:  # the answer is never taken: ICE never finishes
                await close(pc, player)

        async def scenario() -> None:
            for name in ("one", "two"):
                assert (await post(name)).status_code == 201
            over_cap(await post("three"), "max_publishers")
            # An unconnected session is closed after sources.open_timeout_s, and its place is free again.
            await asyncio.to_thread(
                wait_for, lambda: state_of(served.client, "one") == "lost", 20, "the unconnected session to close"
            )
            assert (await post("four")).status_code == 201

        asyncio.run(scenario())


async def close(pc: RTCPeerConnection, player: object) -> None:
    await pc.close()
    video = getattr(player, "video", None)
    if video is not None:
        video.stop()


# ---- uploads ------------------------------------------------------------------------------------------------------
def test_uploads_queue_with_their_position_and_run_in_turn(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path, videos: dict[str, Path]
) -> None:
    caps = {"service.max_uploads_running": 1, "service.upload_queue": 1, "pipeline.health_interval_s": 0.1}
    with serving(seed_model, tmp_path / "deepfake.db", engine_cache, caps) as served:
        client = served.client
        first = client.post("/api/uploads", headers=OCTET, content=videos["long"].read_bytes())
        assert first.status_code == 202 and first.json()["state"] in ("queued", "running"), first.text
        second = client.post("/api/uploads", headers=OCTET, content=videos["short"].read_bytes())
        assert second.status_code == 202, second.text
        waiting = second.json()
        assert (waiting["state"], waiting["queue_position"]) == ("queued", 1), waiting
        assert client.get("/api/uploads").json()[0]["queue_position"] == 1  # listed newest first
        over_cap(client.post("/api/uploads", headers=OCTET, content=videos["short"].read_bytes()), "upload_queue")
        first_id, second_id = first.json()["upload_id"], waiting["upload_id"]

        def state(upload_id: str) -> dict:
            return client.get(f"/api/uploads/{upload_id}").json()

        seen = []  # the first upload's states while the second waits
        while (now := state(second_id))["state"] == "queued":
            seen.append(state(first_id)["state"])
            time.sleep(0.1)
        assert "running" in seen and set(seen) <= {"running", "done"}, seen
        assert state(first_id)["state"] == "done" and now["queue_position"] is None
        ended = wait_for(lambda: (s := state(second_id))["state"] in ("done", "failed") and s, 60, "the second")
        assert ended["state"] == "done" and ended["frames_done"] == 30, ended


def test_a_slow_upload_is_cut_off_and_its_file_deleted(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path
) -> None:
    caps = {"service.upload_min_kbps": 64, "service.upload_grace_s": 2, "service.max_connections": 2}
    with serving(seed_model, tmp_path / "deepfake.db", engine_cache, caps) as served:
        host, port = served.url.removeprefix("http://").rstrip("/").split(":")
        head = f"POST /api/uploads HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
        head += "Content-Length: 100000\r\n\r\n"
        with (
            socket.create_connection((host, int(port)), timeout=5) as client,
            socket.create_connection((host, int(port)), timeout=5) as other,
        ):
            for connection in (client, other):
                connection.sendall(head.encode() + b"\0")
            # Two requests being served: a third is refused at once (GET /healthz still answers).
            wait_for(lambda: served.client.get("/api/streams").status_code == 429, 10, "the connection cap")
            over_cap(served.client.get("/api/uploads"), "max_connections")
            assert served.client.get("/healthz").status_code == 200
            other.close()
            answer = b""
            deadline = time.monotonic() + 25  # far past the grace period; the idle timeout (30 s) never comes
            while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    client.sendall(b"\0")  # a byte a second
                client.settimeout(1)
                with contextlib.suppress(TimeoutError):
                    answer += client.recv(4096)
            with contextlib.suppress(TimeoutError, OSError):  # the body may come in a read of its own
                while b"}" not in answer.partition(b"\r\n\r\n")[2] and (more := client.recv(4096)):
                    answer += more
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"service.upload_min_kbps" in answer, answer
        folder = Path(served.detector.settings.store.db).parent / "uploads"
        assert not any(folder.glob("*")) if folder.exists() else True  # the partial file is gone
        wait_for(lambda: served.client.get("/api/uploads").status_code == 200, 10, "the requests' slots to free")
        assert served.client.get("/api/uploads").json() == []


def test_the_pace_cuts_an_upload_below_its_rate_or_past_its_deadline() -> None:
    pace = Pace(min_bytes_per_s=1000, grace_s=5, deadline_s=60)
    pace.check(10, 4.9)  # within the grace period anything goes
    pace.check(6000, 6)  # fast enough
    with pytest.raises(ApiError) as slow:
        pace.check(5000, 6)
    assert slow.value.status == 408 and "service.upload_min_kbps" in str(slow.value)
    with pytest.raises(ApiError) as late:
        pace.check(10**9, 61)
    assert late.value.status == 408 and "service.upload_deadline_s" in str(late.value)


# ---- ended streams ------------------------------------------------------------------------------------------------
def test_ended_streams_leave_the_listing_and_metrics_after_ended_keep_s(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path
) -> None:
    caps = {"service.ended_keep_s": 2, "pipeline.health_interval_s": 0.1}
    with serving(seed_model, tmp_path / "deepfake.db", engine_cache, caps, full=True) as served:
        client = served.client
        assert client.post("/api/streams", json={"source": "demo", "name": "brief"}).status_code == 202
        wait_for(lambda: state_of(client, "brief") == "live", 30, "the demo to go live")
        wait_for(lambda: 'stream="brief"' in client.get("/metrics").text, 10, "its series")
        assert client.delete("/api/streams/brief").json()["state"] == "ended"
        assert 'stream="brief"' in client.get("/metrics").text  # kept a while after its end ...
        wait_for(lambda: client.get("/api/streams/brief").status_code == 404, 20, "the ended stream to be pruned")
        wait_for(lambda: 'stream="brief"' not in client.get("/metrics").text, 20, "its series to be removed")
        assert all(s["stream_id"] != "brief" for s in client.get("/api/streams").json())
        with open_reader(served.detector.settings.store.db) as reader:  # ... and in the store for good
            assert "brief" in [s.stream_id for s in reader.streams(served.detector.session_id)]
