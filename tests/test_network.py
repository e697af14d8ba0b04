"""The cached per-frame path equals the original forward; label order; window modes."""

from __future__ import annotations

import pytest
import torch

from model.labels import ARCHITECTURE_NAMES, LABEL_ORDER
from model.network import ARCHITECTURES, FAKE_INDEX, FrameOutputs, SeedNet, build_network
from tests.helpers import random_temporal

pytestmark = pytest.mark.fast  # make test-fast


@pytest.fixture(scope="module")
def window() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(12, 3, 112, 112, generator=generator)


def test_seed_state_dict_is_key_for_key_the_original(seed_model) -> None:
    keys = set(seed_model.network.state_dict())
    assert {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "linear1.weight", "linear1.bias"} <= keys
    assert not {k for k in keys if k.startswith("lstm.bias")}
    assert {k.split(".")[1] for k in keys if k.startswith("model.")} == {"0", "1", "4", "5", "6", "7"}
    assert seed_model.network.state_dict()["lstm.weight_ih_l0"].shape == (8192, 2048)
    total = sum(t.numel() for k, t in seed_model.network.state_dict().items() if "num_batches" not in k)
    assert 56_000_000 < total < 57_000_000


def test_cached_last_equals_the_apps_forward(seed_model, window) -> None:
    network = seed_model.network
    with torch.inference_mode():
        reference = torch.softmax(network(window.unsqueeze(0), "last"), dim=1)[0, FAKE_INDEX]
        cached = network.score_window(network.encode_frames(window), "last")
    assert abs(float(reference) - float(cached)) < 1e-5


def test_cached_mean_equals_the_training_forward(seed_model, window) -> None:
    network = seed_model.network
    with torch.inference_mode():
        reference = torch.softmax(network(window.unsqueeze(0), "mean"), dim=1)[0, FAKE_INDEX]
        cached = network.score_window(network.encode_frames(window), "mean")
    assert abs(float(reference) - float(cached)) < 1e-5


def test_encoding_frames_one_at_a_time_equals_encoding_them_together(seed_model, window) -> None:
    network = seed_model.network
    with torch.inference_mode():
        together = network.encode_frames(window)
        alone = [network.encode_frames(window[i : i + 1]) for i in range(len(window))]
    stacked = torch.cat([a.logits for a in alone])
    assert torch.allclose(stacked, together.logits, atol=1e-5)


def test_earlier_frames_move_mean_but_not_last(seed_model, window) -> None:
    network = seed_model.network
    changed = window.clone()
    changed[:-1] = torch.flip(changed[:-1], dims=[3]) * 3.0
    with torch.inference_mode():
        before, after = network.encode_frames(window), network.encode_frames(changed)
        assert float(network.score_window(before, "last")) == pytest.approx(
            float(network.score_window(after, "last")), abs=1e-7
        )
        assert abs(float(network.score_window(before, "mean")) - float(network.score_window(after, "mean"))) > 1e-6


def test_label_order_index_zero_is_fake() -> None:
    network = SeedNet().eval()
    with torch.no_grad():
        network.linear1.weight.zero_()
        network.linear1.bias.copy_(torch.tensor([4.0, -4.0]))
    with torch.inference_mode():
        outputs = FrameOutputs(features=torch.zeros(3, 2048), logits=network.linear1(torch.zeros(3, 2048)))
        assert float(network.score_window(outputs, "mean")) > 0.99


def test_batched_windows_score_each_face_on_its_own(seed_model, window) -> None:
    network = seed_model.network
    with torch.inference_mode():
        outputs = network.encode_frames(window)
        faces = FrameOutputs(features=outputs.features.view(2, 6, -1), logits=outputs.logits.view(2, 6, -1))
        batched = network.score_window(faces, "mean")
        first = network.score_window(FrameOutputs(outputs.features[:6], outputs.logits[:6]), "mean")
        second = network.score_window(FrameOutputs(outputs.features[6:], outputs.logits[6:]), "mean")
    assert torch.allclose(batched, torch.stack([first, second]), atol=1e-6)


def test_temporal_arch_caches_features_and_runs_the_lstm_per_window(window) -> None:
    network = random_temporal()
    with torch.inference_mode():
        outputs = network.encode_frames(window)
        assert outputs.logits is None and outputs.features.shape == (12, 2048)
        reference = torch.softmax(network(window.unsqueeze(0), "mean"), dim=1)[0, FAKE_INDEX]
        cached = network.score_window(outputs, "mean")
        assert abs(float(reference) - float(cached)) < 1e-5
        # The temporal LSTM carries state across the window: earlier frames move even the "last" score.
        earlier_changed = FrameOutputs(
            features=torch.cat([outputs.features[:-1] * -2.0, outputs.features[-1:]]), logits=None
        )
        assert float(network.score_window(earlier_changed, "last")) != float(network.score_window(outputs, "last"))


def test_unknown_mode_and_arch_are_refused(seed_model, window) -> None:
    with pytest.raises(ValueError, match="window mode"):
        seed_model.network.score_window(FrameOutputs(torch.zeros(2, 2048), torch.zeros(2, 2)), "median")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("transformer")


def test_architectures_are_the_model_layers_names() -> None:
    assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES == ("seed", "temporal")
    for name in ARCHITECTURE_NAMES:
        assert build_network(name).arch == name
    assert LABEL_ORDER[FAKE_INDEX] == "FAKE"
