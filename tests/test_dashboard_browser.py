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
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.access import PASSWORD_ENV
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


UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A PUT to Streamlit's upload endpoint as the page's own script would send it: its session, its XSRF cookie.
PUT_UPLOAD = """async ([session, size]) => {
  const xsrf = (document.cookie.match(/(?:^|; )_streamlit_xsrf=([^;]*)/) || [])[1] || "";
  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(size)]), "probe.mp4");
  const response = await fetch(`/_stcore/upload_file/${session}/probe-${size}`, {
    method: "PUT", body: form, headers: { "X-Xsrftoken": decodeURIComponent(xsrf) },
  });
  return [response.status, await response.text()];
}"""


def test_the_password_guards_streamlits_own_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CHROMIUM.exists():
        require(f"no Chromium at {CHROMIUM} for the browser test (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        require("the playwright Python package is not installed (pip install -e '.[dev]')")

    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    cap_mb = 3  # the service's upload cap: the server holds no more than this per file
    with start_dashboard(tmp_path / "runs" / "deepfake.db", upload_max_mb=cap_mb) as dashboard:
        for path in ("/_stcore/metrics", "/_stcore/agent/openapi.json"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(dashboard.url + path, timeout=10)
            assert refused.value.code == 403, path
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
            )
            try:
                page = context.new_page()
                sessions: set[str] = set()
                page.on(
                    "websocket",
                    lambda ws: ws.on(
                        "framereceived",
                        lambda frame: sessions.update(
                            m.decode() for m in UUID.findall(frame if isinstance(frame, bytes) else frame.encode())
                        ),
                    ),
                )
                page.goto(dashboard.url)
                expect(page.get_by_text("This dashboard asks for its password")).to_be_visible(timeout=30_000)
                assert sessions, "the page's session id never arrived over its WebSocket"
                # Before the password: Streamlit would take the file for this session (204); the guard refuses it.
                for session in sessions:
                    status, text = page.evaluate(PUT_UPLOAD, [session, 1024])
                    assert status == 403 and "locked" in text, (status, text)

                page.get_by_label("Password", exact=True).fill("correct horse")
                page.get_by_role("button", name="Open the dashboard").click()
                page.get_by_text("Analyse a video").click()
                uploader = page.locator('[data-testid="stFileUploader"]')
                expect(uploader).to_contain_text(f"{cap_mb}MB per file", timeout=30_000)  # not Streamlit's 200MB
                answers = [page.evaluate(PUT_UPLOAD, [session, 1024]) for session in sessions]
                # The page's own session may upload now (the other ids in its messages are no sessions).
                assert [status for status, _ in answers].count(204) == 1, answers
                session = next(s for s, (status, _) in zip(sessions, answers, strict=True) if status == 204)
                status, _ = page.evaluate(PUT_UPLOAD, [session, (cap_mb + 1) * 2**20])
                assert status == 413  # over the service's cap, refused by the server itself
            finally:
                context.close()
