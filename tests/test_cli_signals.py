"""Ctrl-C (SIGINT) and SIGTERM stop the detector cleanly: exit 0, session ended, scores kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.store import StoreReader

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
                with StoreReader(db) as reader:
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
    with StoreReader(db) as reader:
        session = reader.latest_session()
        assert session.ended_at is not None
        assert {f.state for f in reader.faces(session.session_id)} == {"gone"}
        assert sum(f.frames_scored for f in reader.faces(session.session_id)) >= scored
