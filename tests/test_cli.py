"""The command line: a good run writes its report; every user mistake is one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import media

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_stream.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    return media.write_video(folder / "face.mp4", media.render(media.one_face(), 25))


def test_a_file_run_prints_and_writes_the_summary(face_video, tmp_path) -> None:
    report = tmp_path / "report.json"
    done = run_cli(str(face_video), "--window", "10", "--db", str(tmp_path / "s.db"), "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "UNCALIBRATED" in done.stdout and "per-face summary" in done.stdout
    content = json.loads(report.read_text())
    assert content["calibrated"] is False
    assert [f["track_id"] for f in content["faces"]] == [1]
    assert content["faces"][0]["frames_scored"] == content["faces"][0]["crops"] - 9


def test_the_demo_runs_for_a_duration(tmp_path) -> None:
    report = tmp_path / "demo.json"
    done = run_cli(
        "demo", "--duration", "6", "--window", "10", "--db", str(tmp_path / "demo.db"), "--report", str(report)
    )
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout and "Traceback" not in done.stderr
    faces = json.loads(report.read_text())["faces"]
    scored = [f for f in faces if f["frames_scored"] > 0]
    assert len(scored) >= 2, faces  # the demo's two faces are both scored
    assert all(f["stream_id"] == "demo" and f["verdict"] == "UNSURE" for f in faces)


def _bad_inputs(tmp_path: Path, face_video: Path) -> dict[str, tuple[list[str], str]]:
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    bad_checkpoint = tmp_path / "model.pt"
    bad_checkpoint.write_bytes(b"\x00" * 100)
    db = str(tmp_path / "ok.db")
    return {
        "missing camera": (["/dev/video97", "--db", db], "no camera at /dev/video97"),
        "unknown scheme": (["ftp://host/cam", "--db", db], "unknown source scheme ftp://"),
        "missing file": ([str(tmp_path / "nope.mp4"), "--db", db], "no such file"),
        "not a video": ([str(not_video), "--db", db], "not a video FFmpeg can read"),
        "window too small": ([str(face_video), "--window", "5"], "must be 10..100 frames"),
        "window too large": ([str(face_video), "--window", "101"], "must be 10..100 frames"),
        "unwritable db": ([str(face_video), "--db", "/proc/deepfake.db"], "cannot open the score store"),
        "corrupt checkpoint": ([str(face_video), "--weights", str(bad_checkpoint), "--db", db], "download it again"),
        "no source": ([], "give at least one SOURCE"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing camera",
        "unknown scheme",
        "missing file",
        "not a video",
        "window too small",
        "window too large",
        "unwritable db",
        "corrupt checkpoint",
        "no source",
    ],
)
def test_bad_input_is_one_clear_line(case, tmp_path, face_video) -> None:
    args, expected = _bad_inputs(tmp_path, face_video)[case]
    done = run_cli(*args)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_one_bad_source_does_not_stop_the_others(face_video, tmp_path) -> None:
    done = run_cli(str(face_video), str(tmp_path / "missing.mp4"), "--window", "10", "--db", str(tmp_path / "s.db"))
    assert done.returncode == 1  # something failed, and the good source was still scored
    assert "no such file" in done.stderr
    assert "face" in done.stdout and "UNSURE" in done.stdout
