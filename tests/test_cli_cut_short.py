"""A file the run cut short says so on the command line, in the store and in the report: `--duration` on a paced file
is `interrupted` by --duration with the share it reached (exit 0), and a stream stopped through the API of a
`--serve` run is `interrupted` by the API without turning the service's Ctrl-C into exit 130 (real media)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stream.store import open_reader
from tests import media
from tests.helpers import PIN_ENGINE
from tests.netns import private_network

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-cut-short"
FRAMES = 300  # 10 s at 30 fps


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cut-short")
    return media.write_video(folder / "long.mp4", (media.one_face()(i % 150) for i in range(FRAMES)))


def test_a_duration_that_cuts_a_paced_file_short_says_interrupted_and_how_far(long_video: Path, tmp_path) -> None:
    db, report = tmp_path / "s.db", tmp_path / "r.json"
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, str(long_video), "--realtime"]
    done = subprocess.run(
        [*command, "--duration", "3", "--window", "10", "--db", str(db), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stderr  # the user asked for 3 s: not an error, not a Ctrl-C
    assert "Traceback" not in done.stderr
    assert f"long: {long_video} (file, paced)" in done.stderr  # a paced file is not a live source
    [stream] = json.loads(report.read_text())["streams"]
    assert (stream["status"], stream["stop_reason"], stream["frames_expected"]) == ("interrupted", "duration", FRAMES)
    assert 0 < stream["frames_read"] < FRAMES
    assert stream["percent_read"] == pytest.approx(100 * stream["frames_read"] / FRAMES, abs=0.05)
    percent = round(stream["percent_read"])
    [line] = [line for line in done.stderr.splitlines() if line.startswith("interrupted")]
    assert line == f"interrupted at {percent}% of {long_video} (frame {stream['frames_read']}) by --duration"
    assert "long: UNSURE (" in done.stdout and f"; interrupted by --duration at {percent}%, " in done.stdout
    with open_reader(db) as reader:
        [row] = reader.streams(reader.latest_session().session_id)
    assert (row.health.state.value, row.health.stop_reason.value) == ("interrupted", "duration")


@pytest.fixture
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def test_a_stream_stopped_through_the_api_leaves_the_services_exit_status_alone(
    private_netns: None, long_video: Path, tmp_path: Path
) -> None:
    db, report = tmp_path / "serve.db", tmp_path / "serve.json"
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, "--serve", "0", str(long_video)]
    process = subprocess.Popen(
        [*command, "--realtime", "--window", "10", "--db", str(db), "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "DEEPFAKE_STREAM_TOKEN": TOKEN},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 150)
        assert ready, "no service line within 150 s"
        match = re.fullmatch(r"service: (http://127\.0\.0\.1:\d+/)\n", process.stdout.readline())
        assert match
        client = httpx.Client(base_url=match.group(1), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [stream] = client.get("api/streams").json()
            if stream["frames_read"] >= 10:
                break
            time.sleep(0.2)
        stopped = client.delete(f"api/streams/{stream['stream_id']}")
        assert stopped.status_code == 200, stopped.text
        assert (stopped.json()["state"], stopped.json()["stop_reason"]) == ("interrupted", "api")
        process.send_signal(signal.SIGINT)  # the service itself ends as a Ctrl-C ends a live source: exit 0
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    [stream] = json.loads(report.read_text())["streams"]
    assert (stream["status"], stream["stop_reason"]) == ("interrupted", "api")
    assert 0 < stream["percent_read"] < 100
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert line.endswith(" by a stop through the API")
