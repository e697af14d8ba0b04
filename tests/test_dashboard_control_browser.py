"""The control room end to end in a real browser: a detector service with a token (started here), the dashboard as
`run_stream.py` starts it (a child process with the token in its environment only), and headless Chromium
(Debian's, driven by Playwright) uploading a test video through the page's uploader, reading the report, then
adding the test RTSP camera from the form, seeing it go live, and stopping it.

Layer 4 of DESIGN.md: inside a private network namespace (tests/netns.py); skipped with the reason when Chromium,
Playwright or the GStreamer RTSP server is missing, failed instead under CI. Screenshots go to test-artifacts/.
Run with `-s` to see the upload-to-report time through the page.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.launch import start_dashboard
from model.labels import UNCALIBRATED_WARNING
from model.weights import LoadedModel
from stream.store import build_report, open_reader
from tests import media
from tests.netns import private_network, require, rtsp_server
from tests.test_dashboard_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS
from tests.test_dashboard_control import FAST, TOKEN, camera_video  # noqa: F401 (a fixture)
from tests.test_service_api import serving

REPORT_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def test_upload_then_add_a_camera_in_the_browser(
    tmp_path: Path,
    seed_model: LoadedModel,
    engine_cache: Path,
    camera_video: Path,  # noqa: F811
) -> None:
    if not CHROMIUM.exists():
        require(f"no Chromium at {CHROMIUM} for the browser test (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        require("the playwright Python package is not installed (pip install -e '.[dev]')")

    video = media.write_video(tmp_path / "interview.mp4", media.render(media.one_face(), 90))
    db = tmp_path / "runs" / "deepfake.db"
    with (
        serving(seed_model, db, engine_cache, FAST, token=TOKEN) as served,
        rtsp_server(camera_video) as camera_url,
        start_dashboard(db, token=TOKEN) as dashboard,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1800},
        )
        try:
            page = context.new_page()
            page.goto(f"{dashboard.url}/?page=analyse")
            expect(page.get_by_text("per video").first).to_be_visible(timeout=30_000)  # the cap, from the service
            started = time.monotonic()
            page.locator('input[type="file"]').set_input_files(str(video))
            verdict = page.locator(".st-key-upload-verdict")
            expect(verdict).to_contain_text("overall verdict for interview.mp4", timeout=REPORT_TIMEOUT_MS)
            print(f"\nupload to report through the page: {time.monotonic() - started:.2f} s (90 frames, 320x240)")
            expect(verdict).to_contain_text("UNSURE")

            upload_id = next(u["upload_id"] for u in served.client.get("/api/uploads").json())
            with open_reader(db) as reader:
                [stream] = build_report(reader, served.detector.session_id, [upload_id]).streams
            assert stream.status == "ok" and stream.faces
            for face in stream.faces:
                card = page.locator(f".st-key-upload-face-{face.track_id}")
                expect(card).to_contain_text(f"face #{face.track_id}")
                expect(card).to_contain_text(f"mean p(fake) {face.mean_p_fake:.3f} · max p(fake) {face.max_p_fake:.3f}")
                expect(card.locator('[data-testid="stVegaLiteChart"]')).to_be_visible()
            expect(page.get_by_text(UNCALIBRATED_WARNING).first).to_be_visible()
            expect(page.get_by_role("button", name="Download report (JSON)")).to_be_visible()
            assert TOKEN not in page.content()  # the token stays with the dashboard's process
            page.wait_for_function("[...document.images].every((image) => image.complete)")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-upload.png"), full_page=True)

            page.get_by_text("Cameras", exact=True).click()
            page.get_by_role("textbox", name="RTSP URL").fill(camera_url)
            page.get_by_role("textbox", name="Name (optional)").fill("door")
            page.get_by_role("button", name="Add").click()
            expect(page.get_by_text("added door")).to_be_visible(timeout=30_000)
            # The stream list is a fragment that redraws every second: while it does, a stale copy of the card can
            # stand beside the new one, so look for a card with the text, and click again if a click hit the copy.
            card = ".st-key-camera-door"
            expect(page.locator(card, has_text="live").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard-cameras.png"), full_page=True)
            stopped = page.get_by_text("stopped door: ended")
            for _ in range(3):
                page.locator(card).get_by_role("button", name="Stop").first.click()
                with contextlib.suppress(AssertionError):
                    expect(stopped).to_be_visible(timeout=10_000)
                    break
            expect(stopped).to_be_visible()
            expect(page.locator(card, has_text="ended").first).to_be_visible(timeout=30_000)
        finally:
            context.close()
