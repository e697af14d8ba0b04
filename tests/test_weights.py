"""The loader: original checkpoints load strictly; everything else gets a one-line CheckpointError."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from model.labels import ARCHITECTURE_NAMES, UNCALIBRATED_WARNING
from model.network import SeedNet
from model.preprocess import crops_to_batch
from model.weights import CheckpointError, load_checkpoint, resolve_weights, save_checkpoint
from tests.helpers import astronaut_face_bgr, fit_seed_head, random_temporal


@pytest.fixture(scope="module")
def original_file(tmp_path_factory, seed_model) -> Path:
    """A state_dict saved the way the original project saved it."""
    path = tmp_path_factory.mktemp("originals") / "model_87_acc_20_frames_final_data.pt"
    torch.save(seed_model.network.state_dict(), path)
    return path


def _window() -> torch.Tensor:
    face = astronaut_face_bgr()
    return crops_to_batch([face, face[::-1], face[:, ::-1].copy(), face[10:, 5:]])


def _same_outputs(first, second) -> None:
    with torch.inference_mode():
        a = first.network.encode_frames(_window())
        b = second.network.encode_frames(_window())
        for mode in ("mean", "last"):
            assert float(first.network.score_window(a, mode)) == pytest.approx(
                float(second.network.score_window(b, mode)), abs=1e-6
            )


def test_original_layout_loads_strictly_with_its_registry_facts(original_file, seed_model) -> None:
    loaded = load_checkpoint(original_file)
    assert loaded.calibrated and loaded.arch == "seed"
    assert loaded.trained_window == 20 and loaded.reported_accuracy == pytest.approx(87.79)
    assert loaded.label_order == ("FAKE", "REAL") and loaded.preprocessing.channel_order == "BGR"
    assert loaded.weights_hash == seed_model.weights_hash
    _same_outputs(loaded, seed_model)


def test_dataparallel_prefix_and_missing_bn_counters_are_accepted(tmp_path, seed_model) -> None:
    state = {f"module.{k}": v for k, v in seed_model.network.state_dict().items() if "num_batches" not in k}
    path = tmp_path / "fork.pt"
    torch.save(state, path)
    loaded = load_checkpoint(path)
    assert loaded.trained_window is None  # not a registered name: no invented facts
    _same_outputs(loaded, seed_model)


def test_lstm_with_bias_is_rejected_naming_the_extra_keys(tmp_path) -> None:
    network = SeedNet()
    network.lstm = nn.LSTM(2048, 2048, 1, bias=True)
    path = tmp_path / "bias.pt"
    torch.save(network.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"unexpected keys: lstm\.bias_hh_l0, lstm\.bias_ih_l0"):
        load_checkpoint(path)


def test_wrong_shapes_are_named(tmp_path, seed_model) -> None:
    state = dict(seed_model.network.state_dict())
    state["linear1.weight"] = torch.zeros(3, 2048)
    state["linear1.bias"] = torch.zeros(3)
    path = tmp_path / "three_classes.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wrong shapes: linear1\.bias \(3,\) \(expected \(2,\)\)"):
        load_checkpoint(path)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"linear1.weight": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused") as error:
        load_checkpoint(path)
    assert not marker.exists()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "empty", "text", "missing"])
@pytest.mark.parametrize("seed", range(3))
def test_unreadable_files_give_one_line_errors(tmp_path, original_file, kind, seed) -> None:
    path = tmp_path / f"{kind}.pt"
    if kind == "corrupt":
        path.write_bytes(random.Random(seed).randbytes(4096))
    elif kind == "truncated":
        path.write_bytes(original_file.read_bytes()[: original_file.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html>Google Drive: virus scan warning</html>")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "refused" not in message  # a damaged file is not reported as a malicious one


def test_foreign_checkpoints_are_rejected(tmp_path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing keys: .* and \d+ more; unexpected keys: "):
        load_checkpoint(path)
    training_state = tmp_path / "training_state.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 1e-5}}, training_state)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_checkpoint(training_state)
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tensor_file)


@pytest.mark.parametrize("arch", ARCHITECTURE_NAMES)
def test_own_format_round_trips(tmp_path, seed_model, arch) -> None:
    network = seed_model.network if arch == "seed" else random_temporal()
    metrics = {"auc": 0.5, "evaluation": {"threshold": 0.4}}
    path = save_checkpoint(network, tmp_path / f"own-{arch}.pt", window=30, trained_on="test", metrics=metrics)
    loaded = load_checkpoint(path)
    assert loaded.arch == arch and loaded.calibrated and loaded.trained_window == 30
    assert loaded.metrics == metrics and loaded.threshold == 0.4
    with torch.inference_mode():
        before = network.encode_frames(_window())
        after = loaded.network.encode_frames(_window())
        for mode in ("mean", "last"):
            assert float(network.score_window(before, mode)) == pytest.approx(
                float(loaded.network.score_window(after, mode)), abs=1e-6
            )


def test_own_format_missing_fields_is_named(tmp_path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"format": "deepfake-stream/1", "arch": "seed"}, path)
    with pytest.raises(CheckpointError, match="lacks fields: state_dict, window"):
        load_checkpoint(path)


def test_own_format_with_an_unknown_architecture_is_refused(tmp_path) -> None:
    path = tmp_path / "other.pt"
    fields = {"window": 10, "label_order": ["FAKE", "REAL"], "mean": [0.0] * 3, "std": [1.0] * 3}
    fields |= {"input_size": 112, "channel_order": "BGR", "state_dict": {}}
    torch.save({"format": "deepfake-stream/1", "arch": "transformer", **fields}, path)
    with pytest.raises(CheckpointError, match="unknown architecture 'transformer'"):
        load_checkpoint(path)


def test_auto_without_checkpoints_is_the_flagged_random_model(tmp_path, seed_model) -> None:
    loaded = resolve_weights("auto", tmp_path)
    assert not loaded.calibrated
    assert UNCALIBRATED_WARNING in loaded.describe()
    assert loaded.weights_hash == seed_model.weights_hash  # seeded: the same every run


def test_auto_picks_the_best_original_present(tmp_path, original_file) -> None:
    for name in ("model_84_acc_10_frames_final_data.pt", "model_93_acc_100_frames_final_data.pt"):
        os.link(original_file, tmp_path / name)
    loaded = resolve_weights("auto", tmp_path)
    assert loaded.name == "model_93_acc_100_frames_final_data.pt" and loaded.trained_window == 100


def test_a_folder_picks_its_best_checkpoint_as_auto_does(tmp_path, original_file, seed_model) -> None:
    downloads = tmp_path / "Downloads" / "deepfake models"  # where a browser put the Google Drive folder
    downloads.mkdir(parents=True)
    (downloads / "notes.txt").write_text("not a checkpoint")
    for name in ("model_87_acc_20_frames_final_data.pt", "model_90_acc_60_frames_final_data.pt"):
        os.link(original_file, downloads / name)
    loaded = resolve_weights(downloads)
    assert loaded.name == "model_90_acc_60_frames_final_data.pt" and loaded.trained_window == 60 and loaded.calibrated
    assert resolve_weights(str(downloads)).name == loaded.name  # as --weights passes it: a string

    own = tmp_path / "own"
    save_checkpoint(seed_model.network, own / "mine.pt", window=20, trained_on="test")
    assert resolve_weights(own).path == own / "mine.pt"


def test_a_folder_without_checkpoints_names_what_it_looked_for(tmp_path) -> None:
    (tmp_path / "model_93_acc_100_frames_final_data.pt.zip").write_bytes(b"PK")
    with pytest.raises(CheckpointError) as error:
        resolve_weights(tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "model_84_acc_10_frames_final_data.pt" in message and "model_93_acc_100_frames_final_data.pt" in message
    assert "*.pt" in message


def test_bgr_order_matters_to_a_colour_sensitive_checkpoint(tmp_path, seed_model) -> None:
    face = astronaut_face_bgr()
    rgb_face = face[:, :, ::-1].copy()
    fitted = fit_seed_head(seed_model.network, [face], [rgb_face])
    path = save_checkpoint(fitted, tmp_path / "colour.pt", window=10, trained_on="test: BGR vs RGB")
    loaded = load_checkpoint(path)
    with torch.inference_mode():
        bgr_score = float(loaded.network.score_window(loaded.network.encode_frames(crops_to_batch([face])), "last"))
        rgb_score = float(loaded.network.score_window(loaded.network.encode_frames(crops_to_batch([rgb_face])), "last"))
    assert bgr_score > 0.9 and rgb_score < 0.1
