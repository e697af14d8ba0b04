"""run_stream.py in a subprocess that says at exit which heavy modules it imported: an answer given before the model
loads imported none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import PIN_ENGINE

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "av", "cv2", "mediapipe")
# Runs run_stream.py as `python run_stream.py …` would, and says at exit which heavy modules the process imported.
PROBE = (
    "import atexit, runpy, sys\n"
    f"heavy = {HEAVY!r}\n"
    "atexit.register(lambda: print('imported:', *[m for m in heavy if m in sys.modules], file=sys.stderr))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_probed(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], list[str]]:
    """Exit status, stderr's lines (the probe's own taken out) and the heavy modules the run imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "run_stream.py"), *PIN_ENGINE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    lines = done.stderr.splitlines()
    [probe] = [line for line in lines if line.startswith("imported:")]
    return done.returncode, [line for line in lines if line != probe], probe.split()[1:]


def answered_before_the_model(status: int, lines: list[str], imported: list[str], code: int, text: str) -> None:
    assert (status, imported) == (code, []), (status, imported, lines[-20:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines
