"""The service under held resources (issue 20, `bench/service.py --only caps`): p50/p95 of `GET /api/uploads`,
`GET /api/streams` and a WHIP POST on an idle service, then on the same service, in the same run, while more source
opens hang than asyncio's default thread pool has workers (min(32, cpu + 4)) and 20 uploads wait in the queue.

A hanging open is an RTSP URL on a real listening TCP socket that accepts and never answers (a camera that hangs),
with `sources.open_timeout_s` past the measurement, so every open hangs throughout; `service.max_opening` and
`service.max_streams` are raised for the bench so that all of them are opened at once (the defaults would answer
most with 429). The uploads: `service.max_uploads_running` 1 and `service.upload_queue` 20 (the defaults), one
running and 20 queued clips. Requests are sent one at a time from one client; a WHIP POST sends an aiortc offer
and its session is DELETEd after each (not timed). Goal: p95 ≤ 200 ms under load.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack

from bench.common import print_table
from bench.pipeline import make_video
from model.cpu import cpu_description
from stream.config import Settings, with_overrides
from stream.detector import Detector, engine_label
from stream.service.app import Service, default_extensions
from tests.netns import silent_port

GOAL_MS = 200.0
QUEUED = 20
HANG_S = 600.0  # the hanging opens' timeout: far past the measurement


class CapsBenchError(Exception):
    """Something the bench needs did not happen: one line."""


def default_pool_workers() -> int:
    """asyncio's default executor: a ThreadPoolExecutor with min(32, cpu + 4) workers."""
    return min(32, (os.cpu_count() or 1) + 4)


def whip_offer() -> str:
    """An aiortc offer with one video track (gathered, no trickle), as a publisher sends."""

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


def timed(requests: int, call: Callable[[], float]) -> list[float]:
    return [call() for _ in range(requests)]


def measure(client: httpx.Client, offer: str, requests: int) -> dict[str, list[float]]:
    """Milliseconds of each request, `requests` of each kind, one at a time."""

    def get(path: str) -> Callable[[], float]:
        def call() -> float:
            began = time.perf_counter()
            response = client.get(path)
            took = 1000 * (time.perf_counter() - began)
            if response.status_code != 200:
                raise CapsBenchError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
            return took

        return call

    count = iter(range(10**6))

    def publish() -> float:
        name = f"bench-whip-{next(count)}"
        began = time.perf_counter()
        response = client.post(f"/whip/{name}", content=offer, headers={"Content-Type": "application/sdp"})
        took = 1000 * (time.perf_counter() - began)
        if response.status_code != 201:
            raise CapsBenchError(f"POST /whip/{name} answered {response.status_code}: {response.text[:200]}")
        client.delete(response.headers["location"])
        return took

    return {
        "GET /api/uploads": timed(requests, get("/api/uploads")),
        "GET /api/streams": timed(requests, get("/api/streams")),
        "POST /whip/NAME": timed(requests, publish),
    }


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def caps_bench(engine: str, window: int, requests: int, folder: Path) -> None:
    hanging = default_pool_workers() + 2
    overrides = {
        "model.window": window,
        "model.device": "cpu",
        "model.cpu_engine": engine,
        "pipeline.status_interval_s": 1e9,
        "clips.enabled": False,
        "store.db": str(folder / "caps.db"),
        "service.port": 0,
        "service.max_opening": hanging,
        "service.max_streams": hanging + 8,
        "sources.open_timeout_s": HANG_S,
    }
    settings = with_overrides(Settings(), overrides, "bench")
    clip = make_video(folder / "queued.mp4", 2, 150)
    offer = whip_offer()
    load_before = os.getloadavg()
    with Detector(settings) as detector, silent_port() as port:
        label = engine_label(detector.engine)
        loop = threading.Thread(target=detector.run, kwargs={"serve": True}, name="loop", daemon=True)
        loop.start()
        service = Service(detector, settings.service, default_extensions(detector, settings.service))
        try:
            url = service.start()
            with httpx.Client(base_url=url, timeout=60) as client:
                idle = measure(client, offer, requests)
                for index in range(hanging):
                    body = {"source": f"rtsp://127.0.0.1:{port}/cam{index}", "name": f"hang{index}"}
                    added = client.post("/api/streams", json=body)
                    if added.status_code != 202:
                        raise CapsBenchError(f"POST /api/streams answered {added.status_code}: {added.text[:200]}")
                body = clip.read_bytes()
                for _ in range(QUEUED + 1):
                    sent = client.post(
                        "/api/uploads", content=body, headers={"Content-Type": "application/octet-stream"}
                    )
                    if sent.status_code != 202:
                        raise CapsBenchError(f"POST /api/uploads answered {sent.status_code}: {sent.text[:200]}")
                queued_before = sum(u["state"] == "queued" for u in client.get("/api/uploads").json())
                loaded = measure(client, offer, requests)
                uploads = client.get("/api/uploads").json()
                queued_after = sum(u["state"] == "queued" for u in uploads)
                streams = client.get("/api/streams").json()
                still_hanging = sum(s["state"] == "starting" and s["stream_id"].startswith("hang") for s in streams)
        finally:
            service.stop()
            detector.stop()
            loop.join(30)
    load_after = os.getloadavg()

    print(f"cpu: {cpu_description()}")
    print(
        f"engine {label}, window {window}; asyncio's default pool here: {default_pool_workers()} workers; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)"
    )
    print(
        f"\n{requests} requests of each kind, one at a time; loaded: {hanging} source opens hanging "
        f"({still_hanging} still hanging at the end), uploads queued {queued_before} at the start, {queued_after} at "
        f"the end (1 running); goal p95 <= {GOAL_MS:g} ms:"
    )
    rows = []
    for what in idle:
        row: list[object] = [what]
        for values in (idle[what], loaded[what]):
            row += [f"{pct(values, 0.5):.1f}", f"{pct(values, 0.95):.1f}", f"{max(values):.1f}"]
        row.append("yes" if pct(loaded[what], 0.95) <= GOAL_MS else "NO")
        rows.append(row)
    headers = ["request", "idle p50", "idle p95", "idle max", "loaded p50", "loaded p95", "loaded max", "goal met"]
    print_table(headers, rows)
