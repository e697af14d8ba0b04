"""`python -m model.train` on data prepared by `stream.training.prepare`: real training steps on CPU with the backbone
frozen (head and LSTM), the group split, our checkpoint format with its metrics, Ctrl-C and resume, and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model import train
from model.augment import augment_clip, self_blend_clip
from model.clips import split_by_group
from model.prepared import load_crops, read_manifest, write_manifest
from model.weights import load_checkpoint
from tests import train_flow

ROOT = Path(__file__).resolve().parent.parent


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("error: ")]
    assert len(lines) == 1 and not any("Traceback" in line for line in err), err
    return lines[0]


def test_training_lowers_the_loss_and_separates_the_training_set() -> None:
    loaded = load_checkpoint(train_flow.trained_seed())
    training = loaded.metrics["training"]
    losses = [epoch["loss"] for epoch in training["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert training["train_auc"] >= 0.9 and training["finished"]
    assert loaded.arch == "seed" and loaded.trained_window == train_flow.WINDOW
    assert not loaded.calibrated and loaded.threshold is None  # only an evaluated checkpoint is calibrated
    assert "NOT CALIBRATED" in loaded.describe()
    assert training["config"]["lr"] == 1e-3 and training["config"]["weight_decay"] == 1e-5  # Adam, the original's
    assert training["crop_geometry"] == 3
    # Identity split: no group on both sides.
    assert training["groups"]["val"] and not set(training["groups"]["train"]) & set(training["groups"]["val"])


def test_split_keeps_groups_whole_and_validates_both_labels() -> None:
    manifest = read_manifest(train_flow.prepared())
    for seed in range(5):
        split = split_by_group(manifest, 0.2, seed)
        assert not split.groups(manifest, "train") & split.groups(manifest, "val")
        assert {manifest.videos[i].label for i in split.val} == {"REAL", "FAKE"}
        assert len(split.train) + len(split.val) == len(manifest.videos)


def test_augmentation_and_self_blending_change_a_clip_consistently() -> None:
    manifest = read_manifest(train_flow.prepared())
    video = manifest.videos[-1]
    clip = load_crops(manifest, video)[video.tracks[0].track_id][:4]
    blended = self_blend_clip(clip, np.random.default_rng(0))
    assert blended.shape == clip.shape and blended.dtype == np.uint8
    inner, border = (slice(40, 72), slice(40, 72)), (slice(0, 6), slice(0, 6))
    assert np.abs(blended[:, inner[0], inner[1]].astype(int) - clip[:, inner[0], inner[1]]).mean() > 2
    assert np.abs(blended[:, border[0], border[1]].astype(int) - clip[:, border[0], border[1]]).mean() < 1
    changed = [augment_clip(clip, np.random.default_rng(seed)) for seed in range(6)]
    assert all(c.shape == clip.shape and c.dtype == np.uint8 for c in changed)
    assert any(not np.array_equal(c, clip) for c in changed)


def test_temporal_arch_trains_with_augmentation_and_self_blends(tmp_path, capsys) -> None:
    out = tmp_path / "temporal.pt"
    argv = [str(train_flow.prepared()), "--arch", "temporal", "--epochs", "1", "--self-blend", "--out", str(out)]
    assert train.main([*argv, "--no-progress", *train_flow.TRAIN_FLAGS]) == 0
    loaded = load_checkpoint(out)
    training = loaded.metrics["training"]
    assert loaded.arch == "temporal" and training["config"]["augment"] and training["config"]["self_blend"]
    real_clips = sum(1 for v in read_manifest(train_flow.prepared()).videos if v.label == "REAL")
    assert training["clips"]["train"] > 0 and real_clips
    assert not (tmp_path / "temporal.pt.resume").exists()


def test_ctrl_c_saves_and_the_same_command_resumes(tmp_path) -> None:
    out = tmp_path / "resumable.pt"
    command = [sys.executable, "-m", "model.train", str(train_flow.prepared()), "--epochs", "40", "--no-augment"]
    command += ["--out", str(out), "--no-progress", *train_flow.TRAIN_FLAGS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # SIGINT at its default, as in a terminal: a suite started in the background (`make test &`) ignores SIGINT, and an
    # ignored SIGINT is inherited, so Python would not turn it into KeyboardInterrupt.
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=restore_sigint)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("epoch 1/40:"):
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=300)[1]
    assert process.returncode == 130, "".join(seen) + rest
    assert "run the same command again to resume" in rest
    interrupted = load_checkpoint(out).metrics["training"]
    assert not interrupted["finished"] and interrupted["epochs"] >= 1
    assert (tmp_path / "resumable.pt.resume").is_file()

    done = int(torch.load(tmp_path / "resumable.pt.resume", weights_only=True)["epochs_done"])
    argv = [*command[3:]]
    argv[argv.index("40")] = str(done + 1)  # one more epoch than was saved
    assert train.main(argv) == 0
    history = load_checkpoint(out).metrics["training"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, done + 2))
    assert not (tmp_path / "resumable.pt.resume").exists()


def test_bad_training_input_is_one_line(tmp_path, capsys) -> None:
    data = str(train_flow.prepared())
    assert train.main([data, "--window", "99", "--no-progress", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--window 99 is longer than every face track" in error_line(capsys)

    assert train.main([str(tmp_path), "--no-progress"]) == 2
    assert "not prepared data" in error_line(capsys)

    manifest = read_manifest(train_flow.prepared())
    only_real = tmp_path / "real-only"
    only_real.mkdir()
    (only_real / "crops").symlink_to(train_flow.prepared() / "crops")
    write_manifest(replace(manifest, root=only_real, videos=tuple(v for v in manifest.videos if v.label == "REAL")))
    assert train.main([str(only_real), "--window", "4", "--no-progress"]) == 2
    assert "all REAL: add FAKE videos or pass --self-blend" in error_line(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    write_manifest(replace(manifest, root=empty, videos=()))
    assert train.main([str(empty), "--no-progress"]) == 2
    assert "holds no video with a face" in error_line(capsys)

    other = tmp_path / "other-geometry"
    other.mkdir()
    (other / "crops").symlink_to(train_flow.prepared() / "crops")
    write_manifest(replace(manifest, root=other, crop_geometry=1))
    assert train.main([str(other), "--window", "4", "--no-progress"]) == 2
    assert "crop geometry 1, but serving uses 3" in error_line(capsys)

    with pytest.raises(SystemExit) as exit_info:
        train.main([data, "--arch", "vit"])
    assert exit_info.value.code == 2 and "invalid choice: 'vit'" in error_line(capsys)
