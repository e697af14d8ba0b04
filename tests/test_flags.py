"""The flags run_stream.py and `python -m stream.cluster` share (stream/config/flags.py): one table, so the two
command lines cannot drift apart, and it stays light (`--help` answers before torch loads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import run_stream
from stream.cluster import cli as cluster_cli
from stream.config import config_keys
from stream.config.flags import SHARED_FLAGS, flag_overrides

pytestmark = pytest.mark.fast  # make test-fast
ROOT = Path(__file__).resolve().parent.parent
GIVEN = ["--db", "s.db", "--weights", "w.pt", "--window", "12", "--stride", "2", "--device", "cpu"]
GIVEN += ["--cpu-engine", "torch"]


def test_every_shared_flag_names_a_config_key() -> None:
    for name, flag in SHARED_FLAGS.items():
        section, _, key = flag.key.partition(".")
        assert key in config_keys(section), f"--{name} overrides {flag.key}, which is not a config key"


def test_both_command_lines_give_the_same_flags_the_same_keys() -> None:
    ours = run_stream.parse_args(["demo", *GIVEN])
    cluster = cluster_cli.parse_args(["cameras.yaml", *GIVEN])
    names = cluster_cli.DETECTOR_FLAGS
    assert flag_overrides(ours, names) == flag_overrides(cluster, names)
    assert flag_overrides(ours, names)["model.window"] == 12 and flag_overrides(ours, names)["store.db"] == "s.db"
    assert set(names) <= set(SHARED_FLAGS)


@pytest.mark.parametrize(("flag", "value"), [("--window", "9"), ("--window", "101"), ("--stride", "0")])
def test_a_bad_value_is_the_same_one_line_in_both(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for parse, first in ((run_stream.parse_args, "demo"), (cluster_cli.parse_args, "cameras.yaml")):
        with pytest.raises(SystemExit) as exited:
            parse([first, flag, value])
        assert exited.value.code == 2
        lines.append(capsys.readouterr().err)
    assert lines[0] == lines[1] and len(lines[0].splitlines()) == 1 and lines[0].startswith(f"error: argument {flag}")


def test_the_command_lines_import_nothing_heavy() -> None:
    heavy = ("torch", "cv2", "av", "mediapipe", "numpy", "onnxruntime", "openvino", "ray")
    probe = f"import sys, run_stream, stream.cluster.cli; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
