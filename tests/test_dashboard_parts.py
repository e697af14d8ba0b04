"""The dashboard's parts on their own (database path, redraw fingerprint, verdict re-colouring, CSV/JSON, what it
imports) and `dashboard.launch` starting a real server in a private network namespace."""

from __future__ import annotations

import ast
import json
import shlex
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import control, data, detectors, views
from dashboard.launch import DashboardError, start_dashboard
from dashboard.verdicts import shown_verdict
from stream.config.store_location import PostgresUrl, StoreTarget
from stream.records import VerdictState
from stream.store import ScoreWriter, open_reader, open_writer
from tests.dashboard_store import INFO, ROOT, Run, dashboard
from tests.netns import private_network
from tests.test_layers import DASHBOARD_MAY_IMPORT

# ---- pure parts --------------------------------------------------------------------------------------------------


def test_db_path_argument_then_environment_then_default() -> None:
    assert data.db_path(["--db", "a.db"], {data.DB_ENV: "b.db"}) == Path("a.db")
    assert data.db_path(["-q", "tests/x.py"], {data.DB_ENV: "b.db"}) == Path("b.db")  # pytest's argv under AppTest
    assert data.db_path([], {}) == Path("runs/deepfake.db")


def test_page_redraws_when_the_store_a_run_a_stream_or_the_run_state_appears(db: Path) -> None:
    """The watcher reruns the whole page when this fingerprint changes, and only then."""
    seen = [data.fingerprint(db, data.LATEST)]  # no store yet
    with open_writer(db) as writer:
        seen.append(data.fingerprint(db, data.LATEST))  # a store with no runs
        run = Run(writer)
        writer.commit()
        seen.append(data.fingerprint(db, data.LATEST))  # a run
        run.stream()
        writer.commit()
        seen.append(data.fingerprint(db, data.LATEST))  # its first stream
        run.face(1, VerdictState.REAL, 0.2)
        writer.commit()
        assert data.fingerprint(db, data.LATEST) == seen[-1]  # new scores: the fragments show them, no redraw
        writer.end_session(run.sid)
        seen.append(data.fingerprint(db, data.LATEST))  # the run ended
        assert data.fingerprint(db, run.sid) == seen[-1]  # the same run, picked by its id
    assert len(set(seen)) == len(seen), seen


@pytest.mark.parametrize(
    ("stored", "rolling", "threshold", "calibrated", "expected"),
    [
        ("REAL", 0.35, 0.5, True, "REAL"),  # the detector's own threshold: its verdict as stored
        ("UNSURE", 0.9, 0.5, True, "UNSURE"),  # (even where it has not decided yet)
        ("REAL", 0.35, 0.25, True, "FAKE"),  # 0.35 >= 0.25 + 0.1
        ("FAKE", 0.35, 0.75, True, "REAL"),  # 0.35 <= 0.75 - 0.1
        ("FAKE", 0.35, 0.30, True, "FAKE"),  # inside the band the face keeps its verdict
        ("REAL", 0.35, 0.30, True, "REAL"),
        ("UNSURE", 0.9, 0.1, False, "UNSURE"),  # uncalibrated: never a verdict
        ("UNSURE", None, 0.1, True, "UNSURE"),  # not scored yet
    ],
)
def test_shown_verdict(stored: str, rolling: float | None, threshold: float, calibrated: bool, expected: str) -> None:
    assert shown_verdict(stored, rolling, threshold, 0.5, 0.1, calibrated) == expected


def test_face_summaries_as_csv_and_json(db: Path, writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.75, n=30)
    writer.commit()
    run.face(2, VerdictState.UNSURE, 0.5, n=0)
    writer.commit()
    with open_reader(db) as reader:
        report = data.session_report(reader, run.sid)
        frame = data.summaries_frame(reader, report)
    csv = data.summaries_csv(frame).decode().splitlines()
    assert csv[0].split(",") == data.SUMMARY_COLUMNS
    row = dict(zip(data.SUMMARY_COLUMNS, csv[1].split(","), strict=True))
    assert row["verdict"] == "FAKE" and row["frames_scored"] == "30" and float(row["mean_p_fake"]) == 0.75
    assert float(row["first_media_s"]) == 0.0 and float(row["last_media_s"]) == pytest.approx(29 / 30)
    assert row["status"] == "scored" and frame["status"].iloc[1].startswith("not scored: seen in")
    document = json.loads(data.report_json(report))
    assert document["schema"] == "deepfake-stream/report/1"
    assert document["checkpoint"] == INFO.checkpoint and document["calibrated"] is True
    [stream] = document["streams"]
    assert stream["faces"][0]["max_p_fake"] == 0.75 and stream["faces"][0]["track_id"] == 1
    assert stream["faces"][1]["status"] == "not_scored"
    at = dashboard()
    assert [b.label for b in at.download_button] == ["Download CSV", "Download report (JSON)"]


def test_an_uploads_progress_says_its_pace_as_the_service_gives_it() -> None:
    body = {"upload_id": "upload-1", "session_id": "s", "file_name": "clip.mp4", "state": "running"}
    body |= {"frames_done": 40, "frames_expected": 90, "error": None}
    slowed = control._upload({**body, "note": "slowed: live cameras take priority", "rate_fps": 7.5, "eta_s": 6.7})
    assert slowed.pace == "slowed: live cameras take priority · 7.5 frames/s, about 7 s left"
    assert control._upload({**body, "rate_fps": 30.0, "eta_s": None}).pace == "30.0 frames/s"
    assert control._upload(body).pace == ""  # a service without these fields, or no rate yet


def test_dashboard_imports_only_the_bottom_layer_and_the_store() -> None:
    project = {"stream", "model", "run_stream", "dashboard", "tests", "bench"}
    for path in (ROOT / "dashboard").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in project:
                    allowed = name.startswith("dashboard") or any(
                        name == top or name.startswith(f"{top}.") for top in DASHBOARD_MAY_IMPORT
                    )
                    assert allowed, f"{path.name} imports {name}"


# ---- launching the dashboard (a real server: in a private network namespace) -------------------------------------


@pytest.fixture
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def test_start_dashboard_serves_the_page_and_stops(db: Path, private_netns: None) -> None:
    dashboard_process = start_dashboard(db)
    try:
        assert dashboard_process.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(dashboard_process.url, timeout=10) as response:
            assert response.status == 200
    finally:
        first = dashboard_process.stop()
    assert first is not None and not dashboard_process.running
    assert dashboard_process.stop() == first  # idempotent
    assert not db.exists()


def test_start_dashboard_says_why_it_died(db: Path, private_netns: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match="exited with status"):
            start_dashboard(db, port=port)


def test_what_the_dashboard_imports_does_not_import_torch() -> None:
    """The dashboard imports the store, the records and the light config: none of them may drag torch in."""
    modules = ", ".join(DASHBOARD_MAY_IMPORT)
    check = f"import sys, {modules}; assert 'torch' not in sys.modules, 'the dashboard imported torch'"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "store",
    [
        PostgresUrl("postgresql://postgres@/deepfake?host=/run/postgresql&port=5433"),
        Path("runs/my runs/deepfake.db"),
    ],
)
def test_copy_paste_hints_survive_a_shell(store: StoreTarget) -> None:
    """The commands the dashboard tells a reader to paste: `&` in a PostgreSQL URL would send the command to the
    background, a space would split the path; quoted, the shell hands the store to `--db` whole."""
    for hint in (views.start_hint(store), detectors.start_hint(store)):
        command = hint.split("`")[1]
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)  # splits at `&`, `;`, `|` as a shell does
        lexer.whitespace_split = True  # ... and at spaces, nowhere else
        words = list(lexer)
        assert words[words.index("--db") + 1] == str(store), hint
