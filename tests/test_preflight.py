"""Errors that need no model come before it loads: a bad config, a source that cannot be used, a busy `--serve` port,
a report folder that is missing or takes no file, a store that cannot be opened — each one `error:` line with the
README's exit status, in a process that never imported torch (nor av, cv2, MediaPipe); and nothing is created."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.preflight import PreflightError, check_report_path
from tests import media
from tests.cli_probe import answered_before_the_model, run_probed
from tests.helpers import PIN_ENGINE

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.write_video(tmp_path_factory.mktemp("preflight") / "face.mp4", media.render(media.one_face(), 12))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_bad_config_key(tmp_path: Path, face_video: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("pipeline:\n  max_bacth: 1\n")
    status, lines, imported = run_probed(str(face_video), "--config", str(config), "--db", str(tmp_path / "s.db"))
    answered_before_the_model(status, lines, imported, 2, "did you mean pipeline.max_batch?")
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("kind", ["missing", "folder", "still image", "still image named .mp4"])
def test_a_source_that_cannot_be_used(tmp_path: Path, kind: str) -> None:
    source = {
        "missing": tmp_path / "nope.mp4",
        "folder": tmp_path,
        "still image": tmp_path / "face.png",
        "still image named .mp4": tmp_path / "face.mp4",  # judged by its content, not its name
    }[kind]
    if kind.startswith("still image"):
        source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    expected = "still images are not" if kind.startswith("still image") else ""
    expected = expected or {"missing": "no such file", "folder": "is a folder"}[kind]
    status, lines, imported = run_probed(str(source), "--db", str(tmp_path / "s.db"))
    answered_before_the_model(status, lines, imported, 1, expected)
    assert not (tmp_path / "s.db").exists()  # a run with nothing to score leaves no store behind


@pytest.mark.parametrize("sources", [(), ("demo",)])
def test_a_busy_serve_port(tmp_path: Path, busy_port: int, sources: tuple[str, ...]) -> None:
    status, lines, imported = run_probed(*sources, "--serve", str(busy_port), "--db", str(tmp_path / "s.db"))
    answered_before_the_model(status, lines, imported, 2, f"cannot listen on 127.0.0.1:{busy_port}: ")
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("where", ["missing/dir", "/proc/nope", "/proc"])
def test_a_report_folder_that_is_missing_or_takes_no_file(tmp_path: Path, face_video: Path, where: str) -> None:
    folder = tmp_path / where if not where.startswith("/") else Path(where)
    status, lines, imported = run_probed(
        str(face_video), "--report", str(folder / "x.json"), "--db", str(tmp_path / "s.db")
    )
    expected = "cannot write in /proc" if where == "/proc" else f"the folder {folder} does not exist"
    answered_before_the_model(status, lines, imported, 2, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder made (root may write anywhere), no store


@pytest.mark.parametrize(
    ("db", "expected"),
    [("/proc/deepfake.db", "cannot open the score store"), ("postgresql://u:pw@localhost/x", "must not carry a")],
)
def test_a_store_that_cannot_be_used(face_video: Path, db: str, expected: str) -> None:
    status, lines, imported = run_probed(str(face_video), "--db", db)
    answered_before_the_model(status, lines, imported, 2, expected)


def test_a_report_that_still_cannot_be_written_at_the_end_is_one_line_and_exit_1(
    tmp_path: Path, face_video: Path
) -> None:
    """/dev/full passes the check (it exists and opens for writing) and refuses the write: the run says so."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this machine")
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, str(face_video), "--window", "10"]
    done = subprocess.run(
        [*command, "--db", str(tmp_path / "s.db"), "--report", "/dev/full"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: cannot write report /dev/full: No space left on device"], done.stderr[-3000:]
    assert "per-face summary" in done.stdout  # the run itself was done and summed up


def test_the_report_check_leaves_nothing_behind(tmp_path: Path) -> None:
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    check_report_path(tmp_path / "new.json")
    check_report_path(existing)
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"] and existing.read_text() == "{}"
    with pytest.raises(PreflightError, match="is a folder"):
        check_report_path(tmp_path)
