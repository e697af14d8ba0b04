"""The publish page in a real browser: headless Chromium (Debian's, driven by Playwright) opens `GET /`, publishes
its fake camera over WHIP to a real Detector, and the stream goes live with frames arriving; Stop ends it cleanly.

Layer 4 of DESIGN.md: inside a private network namespace with a veth pair (tests/netns.py); skipped with the reason
when /usr/bin/chromium or Playwright is missing, failed instead under CI. The screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from model.engines import build_engine
from model.labels import UNCALIBRATED_WARNING
from model.weights import LoadedModel
from stream.detector import Detector
from stream.records import StreamHealth, StreamState
from stream.store import open_reader
from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, FAKE_CAMERA_FLAGS
from tests.netns import add_veth_pair, private_network, require
from tests.pipeline_run import detector_settings
from tests.test_whip import serving, wait_for, whip_app

WAIT_S = 60.0
FRAMES = 30  # frames the stream must have read before it counts as flowing


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    """Detector, service and browser in one private namespace, with a veth pair for the WebRTC peers."""
    with private_network():
        add_veth_pair()
        yield


@dataclass
class Served:
    url: str
    detector: Detector
    db: Path

    def health(self, name: str) -> StreamHealth | None:
        return next((h for h in self.detector.health() if h.stream_id == name), None)


@pytest.fixture(scope="module")
def served(
    private_netns: None, tmp_path_factory: pytest.TempPathFactory, seed_model: LoadedModel, engine_cache: Path
) -> Iterator[Served]:
    settings = detector_settings(tmp_path_factory.mktemp("whip-browser") / "deepfake.db")
    engine = build_engine(seed_model, "cpu", "onnxruntime", engine_cache)
    detector = Detector(settings, loaded=seed_model, engine=engine)
    loop = threading.Thread(target=detector.run, kwargs={"serve": True}, name="detector-loop")
    loop.start()
    try:
        with serving(whip_app(detector)) as url:
            yield Served(url, detector, settings.store.db)
    finally:
        detector.stop()
        loop.join(30)
        detector.close()


def test_the_page_publishes_the_browser_camera_and_stop_ends_it(served: Served, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        require(f"no Chromium at {CHROMIUM} for the browser test (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        require("the playwright Python package is not installed (pip install -e '.[dev]')")

    name = "browser-cam"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, *FAKE_CAMERA_FLAGS],
            viewport={"width": 1100, "height": 700},
        )
        try:
            page = context.new_page()
            page.goto(f"{served.url}/")  # http://127.0.0.1:PORT: a secure context, so the camera may be asked for
            page.fill("#name", name)
            page.click("#start")
            expect(page.locator("#status")).to_contain_text("connected", timeout=WAIT_S * 1000)

            def flowing() -> bool:
                health = served.health(name)
                return health is not None and health.state == StreamState.LIVE and health.frames_read >= FRAMES

            wait_for(flowing, WAIT_S, f"{FRAMES} frames of the browser's camera in the stream's health")
            # The page polls the stream's faces: the fake camera shows none, and the model is uncalibrated.
            expect(page.locator("#faces")).to_contain_text("no faces in view", timeout=10_000)
            expect(page.locator("#warning")).to_have_text(UNCALIBRATED_WARNING)
            page.wait_for_function("document.querySelector('#preview').videoWidth > 0")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "whip_publish.png"), full_page=True)

            page.click("#stop")
            expect(page.locator("#status")).to_have_text("Stopped.", timeout=10_000)
            expect(page.locator("#start")).to_be_enabled()
        finally:
            context.close()

    health = served.health(name)
    assert health is not None and health.state == StreamState.ENDED and health.last_error is None, health
    assert health.reconnects == 0 and health.frames_read >= FRAMES
    with open_reader(served.db) as reader:
        session = reader.latest_session()
        assert session is not None
        stream = next(s for s in reader.streams(session.session_id) if s.stream_id == name)
    assert stream.kind == "whip" and stream.health is not None and stream.health.state == StreamState.ENDED


# Relay-only ICE with no relay: the browser offers no candidate it can use, so ICE never connects (as behind a NAT
# or firewall with no TURN server) while everything else about the page is as usual.
NO_PATH = """(() => {
  const Real = window.RTCPeerConnection;
  window.RTCPeerConnection = function (config) { return new Real({ ...config, iceTransportPolicy: "relay" }); };
  window.RTCPeerConnection.prototype = Real.prototype;
})();"""


def test_the_page_says_when_ice_never_connects(served: Served, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        require(f"no Chromium at {CHROMIUM} for the browser test (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        require("the playwright Python package is not installed (pip install -e '.[dev]')")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, *FAKE_CAMERA_FLAGS],
        )
        try:
            page = context.new_page()
            page.add_init_script(NO_PATH)
            page.goto(f"{served.url}/")
            page.fill("#name", "no-path")
            page.click("#start")
            status = page.locator("#status")
            expect(status).to_contain_text("could not connect (ICE)", timeout=WAIT_S * 1000)  # not "new" forever
            expect(status).to_have_class("error")
            expect(page.locator("#start")).to_be_enabled()
        finally:
            context.close()
