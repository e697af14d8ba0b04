"""The prepared set and the trained checkpoint that the prepare, train and evaluate tests share, made once per test
process (preparing runs MediaPipe over every clip; training runs real steps) in a temp folder removed at exit."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from model import train
from stream.training import prepare
from tests.train_sets import labelled_set

CLIPS, FRAMES, WINDOW = 4, 16, 4
# Head and LSTM only (a random-init ResNeXt trains slowly on 2 cores), fixed seed, a short window; the lr is raised
# from the original's 1e-5 so a few epochs move a random head.
TRAIN_FLAGS = ("--window", str(WINDOW), "--freeze-backbone", "--seed", "0", "--lr", "1e-3", "--batch-size", "12")


@cache
def workdir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="train-flow-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@cache
def labelled() -> Path:
    return labelled_set(workdir() / "set", CLIPS, FRAMES)


@cache
def prepared() -> Path:
    out = workdir() / "prepared"
    assert prepare.main([str(labelled()), str(out), "--no-progress"]) == 0
    return out


@cache
def trained_seed() -> Path:
    """The seed arch trained 4 epochs without augmentation (cached backbone features: quick)."""
    out = workdir() / "seed.pt"
    argv = [str(prepared()), "--arch", "seed", "--epochs", "4", "--no-augment", "--out", str(out), "--no-progress"]
    assert train.main([*argv, *TRAIN_FLAGS]) == 0
    return out
