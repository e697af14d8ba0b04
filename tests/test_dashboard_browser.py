"""End to end in a real browser: the detector replays a test video into a store, the dashboard serves it, and
headless Chromium (Debian's, driven by Playwright) loads the page the way a user would.

Layer 4 of DESIGN.md: inside a private network namespace (tests/netns.py); skipped with the reason when
/usr/bin/chromium is missing, failed instead under CI. The screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.launch import start_dashboard
from dashboard.views import card_key
from model.labels import UNCALIBRATED_WARNING
from stream.store import open_reader
from tests import media
from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS
from tests.helpers import PIN_ENGINE
from tests.netns import private_network, require

ROOT = Path(__file__).resolve().parent.parent
DETECTOR_TIMEOUT_S = 180


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    """Everything here (detector, dashboard, browser) runs in its own network namespace with only loopback."""
    with private_network():
        yield


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no output)"


def test_face_card_in_the_browser_matches_the_store(tmp_path: Path, engine_cache: Path) -> None:
    if not CHROMIUM.exists():
        require(f"no Chromium at {CHROMIUM} for the browser test (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        require("the playwright Python package is not installed (pip install -e '.[dev]')")

    video = media.write_video(tmp_path / "face.mp4", media.render(media.one_face(), 150))
    db = tmp_path / "runs" / "deepfake.db"
    detector_log = tmp_path / "detector.log"
    # The dashboard first, on a store that does not exist yet: the page must pick the run up by itself.
    dashboard = start_dashboard(db)
    detector: subprocess.Popen[bytes] | None = None
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 2200},
            )
            try:
                page = context.new_page()
                page.goto(dashboard.url)
                expect(page.get_by_text("start the detector with").first).to_be_visible(timeout=30_000)

                with detector_log.open("wb") as log:
                    detector = subprocess.Popen(
                        [
                            sys.executable,
                            "run_stream.py",
                            *PIN_ENGINE,
                            str(video),
                            "--window",
                            "10",
                            "--db",
                            str(db),
                            "--realtime",
                        ],
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "DEEPFAKE_STREAM_CACHE": str(engine_cache)},
                    )
                cards = page.locator('[class*="st-key-face-"]')
                expect(cards.first).to_be_visible(timeout=DETECTOR_TIMEOUT_S * 1000)  # while the detector runs
                assert detector.wait(DETECTOR_TIMEOUT_S) == 0, _tail(detector_log)

                with open_reader(db) as reader:
                    session = reader.latest_session()
                    assert session is not None and session.ended_at is not None
                    faces = reader.faces(session.session_id)
                assert faces, _tail(detector_log)
                for face in faces:
                    assert face.rolling_p_fake is not None
                    card = page.locator(f".st-key-{card_key(face)}")
                    # The page follows the run to its end by itself: the card settles on the stored final score.
                    expect(card).to_contain_text(f"rolling p(fake) {face.rolling_p_fake:.3f}", timeout=20_000)
                    expect(card).to_contain_text(str(face.verdict))
                    text = card.inner_text()
                    shown = re.search(r"rolling p\(fake\)\s+([0-9.]+)", text)
                    assert shown is not None, text
                    assert float(shown.group(1)) == pytest.approx(face.rolling_p_fake, abs=5e-4)
                # This run had no trained weights: the page says so.
                expect(page.get_by_text(UNCALIBRATED_WARNING).first).to_be_visible()
                # Let the pictures and charts finish drawing before the screenshot.
                expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible()
                page.wait_for_function("[...document.images].every((image) => image.complete)")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                context.close()
    finally:
        if detector is not None and detector.poll() is None:
            detector.kill()
            detector.wait(10)
        dashboard.stop()
