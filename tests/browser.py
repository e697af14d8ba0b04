"""Headless Chromium for the browser tests (Playwright, Debian's /usr/bin/chromium): where it is, the flags that keep
it from calling home, and where screenshots are kept."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE_CAMERA_FLAGS = [
    "--use-fake-device-for-media-stream",  # a synthetic camera (a moving test pattern, no face) ...
    "--use-fake-ui-for-media-stream",  # ... granted without asking
]
