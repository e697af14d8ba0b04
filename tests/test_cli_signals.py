"""Ctrl-C (SIGINT) and SIGTERM stop the detector cleanly: a live source ends (exit 0), a file is reported
interrupted (exit 130) and how far it got; scores are kept; never a traceback, not even during start-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.store import open_reader
from tests import media
from tests.helpers import PIN_ENGINE

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_demo_cleanly(tmp_path, signum) -> None:
    db = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, "demo", "--db", str(db), "--window", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        scored = 0
        while time.monotonic() < deadline and scored < 20:
            time.sleep(0.5)
            if db.exists():
                with open_reader(db) as reader:
                    session = reader.latest_session()
                    if session is not None:
                        scored = sum(f.frames_scored for f in reader.faces(session.session_id))
        assert scored >= 20, "the demo never scored a face"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "per-face summary" in stdout
    with open_reader(db) as reader:
        session = reader.latest_session()
        assert session.ended_at is not None
        assert {f.state for f in reader.faces(session.session_id)} == {"gone"}
        assert sum(f.frames_scored for f in reader.faces(session.session_id)) >= scored


def _start_demo(db: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, "demo", "--db", str(db), "--window", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _stored_scores(db: Path, session_id: str) -> int:
    with open_reader(db) as reader:
        return sum(
            len(reader.scores(session_id, s.stream_id, f.track_id))
            for s in reader.streams(session_id)
            for f in reader.faces(session_id, s.stream_id)
        )


def test_a_killed_detector_keeps_what_it_committed_and_a_restart_is_a_new_session(tmp_path) -> None:
    db = tmp_path / "demo.db"
    process = _start_demo(db)
    try:
        deadline = time.monotonic() + 90
        first = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if db.exists():
                with open_reader(db) as reader:
                    session = reader.latest_session()
                if session is not None and _stored_scores(db, session.session_id) >= 30:
                    first = session.session_id
                    break
        assert first is not None, "the demo never scored"
        process.kill()  # SIGKILL: no chance to clean up
        process.wait(10)
        kept = _stored_scores(db, first)
        assert kept >= 30
    finally:
        if process.poll() is None:
            process.kill()
    second_process = _start_demo(db)
    try:
        deadline = time.monotonic() + 90
        second = None
        while time.monotonic() < deadline and second is None:
            time.sleep(0.5)
            with open_reader(db) as reader:
                newest = reader.latest_session()
            if newest is not None and newest.session_id != first and _stored_scores(db, newest.session_id) > 0:
                second = newest.session_id
        assert second is not None, "the restarted detector never scored"
    finally:
        second_process.send_signal(signal.SIGINT)
        second_process.communicate(timeout=30)
    with open_reader(db) as reader:
        sessions = {s.session_id: s for s in reader.sessions()}
    assert set(sessions) == {first, second}
    assert sessions[first].ended_at is None  # it was killed, and that is what the store says
    assert _stored_scores(db, first) == kept  # the restart did not touch the first session


def test_ctrl_c_during_a_file_says_how_far_it_got_and_exits_130(tmp_path) -> None:
    video = media.write_video(tmp_path / "call.mp4", media.render(media.one_face(), 150))
    db, report = tmp_path / "call.db", tmp_path / "report.json"
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, str(video), "--realtime", "--window", "10"]
    process = subprocess.Popen(
        [*command, "--db", str(db), "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 90
        scored = 0
        while time.monotonic() < deadline and scored < 5:
            time.sleep(0.3)
            if db.exists():
                with open_reader(db) as reader:
                    session = reader.latest_session()
                    if session is not None:
                        scored = sum(f.frames_scored for f in reader.faces(session.session_id))
        assert scored >= 5, "the file was never scored"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    percent = int(line.split("interrupted at ")[1].split("%")[0])
    assert 0 < percent < 100 and str(video) in line and line.endswith(" by Ctrl-C")
    [stream] = json.loads(report.read_text())["streams"]
    assert stream["status"] == "interrupted" and 0 < stream["frames_read"] < 150
    assert (stream["stop_reason"], stream["frames_expected"]) == ("ctrl-c", 150)
    with open_reader(db) as reader:
        session = reader.latest_session()
        [row] = reader.streams(session.session_id)
        assert row.health.state.value == "interrupted"
        assert session.ended_at is not None
    assert f"interrupted by Ctrl-C at {percent}%" in stdout  # the summary's stream line says it too


def test_ctrl_c_while_starting_is_one_line(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, "demo", "--db", str(tmp_path / "s.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    maps = Path(f"/proc/{process.pid}/maps")
    while time.monotonic() < deadline and "libtorch" not in maps.read_text():
        time.sleep(0.02)  # wait until it is inside the heavy imports: torch alone takes seconds to load
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted before the run started: nothing was scored"
