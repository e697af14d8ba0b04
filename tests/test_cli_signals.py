"""Ctrl-C (SIGINT) and SIGTERM stop the detector cleanly: exit 0, session ended, scores kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.store import open_reader

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_demo_cleanly(tmp_path, signum) -> None:
    db = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), "demo", "--db", str(db), "--window", "10"],
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
        [sys.executable, str(ROOT / "run_stream.py"), "demo", "--db", str(db), "--window", "10"],
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
