"""Screen capture (`screen:X,Y,W,H`, x11grab) under Xvfb, looking at a window that plays a test video."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.capture.decoding import open_container
from stream.capture.references import SourceError, parse_source
from stream.config import SourceOptions
from tests import media
from tests.cli_probe import answered_before_the_model, run_probed
from tests.pipeline_run import run_specs

ROOT = Path(__file__).resolve().parent.parent


def require(condition: bool, reason: str) -> None:
    """Skip outside CI when a system part is missing; under CI a missing part is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def x_display(tmp_path) -> Iterator[str]:
    require(shutil.which("Xvfb") is not None, "Xvfb is not installed (apt-get install xvfb)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not report a display number"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def player(x_display, tmp_path, monkeypatch) -> Iterator[str]:
    video = media.write_video(tmp_path / "call.mp4", media.render(media.one_face(), 60))
    monkeypatch.setenv("DISPLAY", x_display)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "screen_player.py"), str(video)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DISPLAY": x_display},
    )
    try:
        assert process.stdout.readline().strip() == "PLAYING", process.stderr.read()
        time.sleep(0.5)
        yield x_display
    finally:
        process.terminate()
        process.wait(10)


def test_a_face_in_a_window_on_the_screen_is_scored(player, seed_model, tmp_path, engine_cache) -> None:
    spec = parse_source(f"screen:0,0,{media.WIDTH},{media.HEIGHT}")
    assert spec.kind == "screen" and spec.live
    result = run_specs([spec], seed_model, tmp_path / "db.sqlite", engine_cache, duration_s=4.0)
    assert result.sources[0].frames_read > 30
    assert result.summaries and max(s.frames_scored for s in result.summaries) > 5


def test_screen_references_are_checked(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(SourceError, match="DISPLAY is not set"):
        parse_source("screen")
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(SourceError, match="screen:X,Y,W,H"):
        parse_source("screen:1,2,3")
    with pytest.raises(SourceError, match="too small"):
        parse_source("screen:0,0,8,8")
    assert parse_source("screen:10,20,320,240").capture_size == "320x240"


def test_a_region_larger_than_the_display_says_so(x_display, monkeypatch) -> None:
    monkeypatch.setenv("DISPLAY", x_display)
    spec = parse_source("screen:0,0,1920,1080")  # the display is 640x480
    with pytest.raises(SourceError, match="must lie inside the X display") as raised:
        open_container(spec, SourceOptions(open_timeout_s=5))
    assert "\n" not in str(raised.value) and "1920x1080" in str(raised.value)


def test_a_region_larger_than_the_display_is_refused_before_the_model_loads(x_display, tmp_path) -> None:
    status, lines, imported = run_probed(
        "screen:0,0,1920,1080", "--db", str(tmp_path / "s.db"), env={"DISPLAY": x_display}
    )
    answered_before_the_model(status, lines, imported, 1, "must lie inside the X display, which is 640x480")


def test_a_screen_on_a_display_that_is_not_there_is_refused_before_the_model_loads(tmp_path) -> None:
    status, lines, imported = run_probed("screen", "--db", str(tmp_path / "s.db"), env={"DISPLAY": ":97"})
    answered_before_the_model(status, lines, imported, 1, "cannot open the X display :97")
