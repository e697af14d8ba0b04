"""The first training command of docs/training.md, run as the page writes it on a made set, learns: AUC >= 0.9 on 10
held-out videos of each label it never saw (a second prepared folder), calibrated on them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch

from model import evaluate, train
from model.network import build_network
from model.weights import load_checkpoint
from stream.training import prepare
from tests.train_sets import labelled_set

ROOT = Path(__file__).resolve().parent.parent
TRAINING_PAGE = ROOT / "docs" / "training.md"
TRAIN_CLIPS, HELD_OUT_CLIPS = 8, 10  # REAL videos, each with its FAKE
TRAIN_FRAMES, HELD_OUT_FRAMES = 20, 14  # a window of 10 needs 10 crops; training clips are half a window apart


def first_training_command() -> list[str]:
    """The arguments of the first `python -m model.train` command the page shows."""
    for line in TRAINING_PAGE.read_text().splitlines():
        if re.match(r"\S*python\S* -m model\.train ", line):
            return shlex.split(line.split("#")[0])[3:]
    raise AssertionError(f"{TRAINING_PAGE} shows no python -m model.train command")


def prepared(source: Path, out: Path) -> Path:
    assert prepare.main([str(source), str(out), "--no-progress"]) == 0
    return out


def test_the_first_training_command_learns_on_held_out_videos(tmp_path, capsys) -> None:
    data, *flags = first_training_command()
    assert data == "prepared/" and "--init" not in flags  # the first model needs no checkpoint to start from
    train_set = prepared(labelled_set(tmp_path / "train", TRAIN_CLIPS, TRAIN_FRAMES), tmp_path / "prepared")
    held_set = labelled_set(tmp_path / "held", HELD_OUT_CLIPS, HELD_OUT_FRAMES, first=TRAIN_CLIPS)
    held_out = prepared(held_set, tmp_path / "held-out")

    out = tmp_path / "first.pt"
    assert train.main([str(train_set), *flags, "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "ETA" in err and "val AUC" in err and " on 4 videos (" in err  # progress with its rate and counts
    assert "note: a random backbone trained whole learns slowly" not in err
    loaded = load_checkpoint(out)
    history = loaded.metrics["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    torch.manual_seed(0)  # the seed arch's weight_hh never acts: training leaves it as it was built
    assert torch.equal(loaded.network.lstm.weight_hh_l0, build_network("seed").lstm.weight_hh_l0)

    calibrated = tmp_path / "first-calibrated.pt"
    report_dir = tmp_path / "eval"
    argv = [str(out), str(held_out), "--out", str(report_dir), "--calibrate", str(calibrated), "--no-progress"]
    assert evaluate.main(argv) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["held_out"] == {"videos": 2 * HELD_OUT_CLIPS, "left_out": 0, "overlap": "none"}
    assert (report["video"]["real"], report["video"]["fake"]) == (HELD_OUT_CLIPS, HELD_OUT_CLIPS)
    assert report["video"]["auc"] >= 0.9 and report["frame"]["auc"] >= 0.9, report["video"]
    assert load_checkpoint(calibrated).calibrated
    printed = capsys.readouterr()
    print(printed.out)  # the AUCs with their intervals, for the record (pytest -s)
