"""The parity gate: the int8 engine passes against fp32 ONNX Runtime (and the PyTorch reference) with a head that
responds to its input; deliberately wrong candidates are rejected."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from model.engines import Engine
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import OnnxInt8Engine
from model.engines.parity import FEATURE_COSINE_MIN, P_FAKE_DELTA_MAX, ParityResult, check_parity
from model.engines.torch_engine import TorchEngine
from model.network import FrameOutputs, WindowMode
from model.weights import LoadedModel
from tests.crop_sets import calibration_crops, held_back_crops, responsive_seed_model

WINDOW = 8


@pytest.fixture(scope="module")
def responsive() -> LoadedModel:
    return responsive_seed_model()


@pytest.fixture(scope="module")
def fp32(responsive, engine_cache) -> OnnxEngine:
    return OnnxEngine(responsive, engine_cache)


@pytest.fixture(scope="module")
def held_back() -> list[np.ndarray]:
    return held_back_crops(24)


def check(reference: Engine, candidate: Engine, crops: list[np.ndarray], model: LoadedModel) -> ParityResult:
    return check_parity(reference, candidate, crops, model.preprocessing, WINDOW)


def test_int8_passes_the_gate_against_fp32_and_the_torch_reference(responsive, fp32, held_back, engine_cache):
    int8 = OnnxInt8Engine(responsive, engine_cache, calibration_crops=calibration_crops())
    result = check(fp32, int8, held_back, responsive)
    assert result.passed, result.describe()
    assert result.p_fake_spread > 0.9  # the head responds: windows go from FAKE through mixed to REAL
    assert result.windows == len(held_back) - WINDOW + 1 and result.crops == len(held_back)
    assert result.describe().startswith("parity PASS: onnxruntime-int8 vs onnxruntime-cpu")
    assert "\n" not in result.describe()
    # Against the PyTorch reference too (fp32 ONNX Runtime itself is checked against it in test_engine.py).
    assert check(TorchEngine(responsive.network, torch.device("cpu")), int8, held_back, responsive).passed


def test_int8_calibrated_on_black_crops_is_rejected(responsive, fp32, held_back, engine_cache) -> None:
    black = [np.zeros((112, 112, 3), np.uint8)] * 2
    broken = OnnxInt8Engine(responsive, engine_cache, calibration_crops=black)
    result = check(fp32, broken, held_back, responsive)
    assert not result.passed
    assert result.feature_cosine_min < FEATURE_COSINE_MIN and result.p_fake_delta_max > P_FAKE_DELTA_MAX
    assert result.describe().startswith("parity FAIL")


@dataclass
class Altered(Engine):
    """An engine whose outputs are the wrapped engine's, changed by `alter`."""

    inner: Engine
    alter: object
    name: str = "altered"

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def encode(self, batch: torch.Tensor) -> FrameOutputs:
        return self.alter(self.inner.encode(batch))

    def score(self, window: FrameOutputs, mode: WindowMode) -> torch.Tensor:
        return self.inner.score(window, mode)


def test_each_tolerance_rejects_on_its_own(responsive, fp32, held_back) -> None:
    generator = torch.Generator().manual_seed(0)

    def noisy_features(out: FrameOutputs) -> FrameOutputs:  # the logits untouched: only the cosine can fail
        noise = torch.randn(out.features.shape, generator=generator) * out.features.norm(dim=1, keepdim=True) / 10
        return FrameOutputs(out.features + noise / out.features.shape[1] ** 0.5, out.logits)

    def shifted_logits(out: FrameOutputs) -> FrameOutputs:  # the features untouched: only |Δp_fake| can fail
        return FrameOutputs(out.features, out.logits + torch.tensor([0.2, 0.0]))

    def not_a_number(out: FrameOutputs) -> FrameOutputs:
        return FrameOutputs(out.features * float("nan"), out.logits * float("nan"))

    noisy = check(fp32, Altered(fp32, noisy_features), held_back, responsive)
    assert not noisy.passed and noisy.feature_cosine_min < FEATURE_COSINE_MIN
    assert noisy.p_fake_delta_max == 0.0
    shifted = check(fp32, Altered(fp32, shifted_logits), held_back, responsive)
    assert not shifted.passed and shifted.p_fake_delta_max > P_FAKE_DELTA_MAX
    assert shifted.feature_cosine_min > 0.999999
    nan = check(fp32, Altered(fp32, not_a_number), held_back, responsive)
    assert not nan.passed and nan.feature_cosine_min == -1.0 and nan.p_fake_delta_max == float("inf")
    assert check(fp32, fp32, held_back, responsive).passed


def test_a_head_that_does_not_respond_is_said_so(seed_model, engine_cache, held_back) -> None:
    engine = OnnxEngine(seed_model, engine_cache)
    result = check(engine, engine, held_back, seed_model)
    assert result.passed and result.p_fake_spread < 0.01
    assert "the head barely responds" in result.describe()


def test_needs_at_least_one_window(responsive, fp32, held_back) -> None:
    with pytest.raises(ValueError, match="at least one window"):
        check_parity(fp32, fp32, held_back[:3], responsive.preprocessing, window=4)
    with pytest.raises(ValueError, match="window must be"):
        check_parity(fp32, fp32, held_back, responsive.preprocessing, window=0)


def test_torch_bf16_passes_the_gate_against_the_torch_reference(responsive, held_back) -> None:
    reference = TorchEngine(responsive.network, torch.device("cpu"))
    bf16 = TorchEngine(copy.deepcopy(responsive.network), torch.device("cpu"), precision="bf16")
    assert bf16.name == "torch-cpu-bf16" and bf16.channels_last
    result = check(reference, bf16, held_back, responsive)
    assert result.passed, result.describe()


def test_cpu_torch_engine_runs_the_lstm_step_natively_and_restores_onednn(responsive) -> None:
    # oneDNN's CPU LSTM reorders 128 MB of weights per call (~120 ms for one step); the reference engine switches
    # it off for the step only, with the same result as the network's own forward.
    engine = TorchEngine(responsive.network, torch.device("cpu"))
    crops = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    assert torch.backends.mkldnn.enabled
    outputs = engine.encode(crops)
    assert torch.backends.mkldnn.enabled
    with torch.inference_mode():
        expected = engine.network.encode_frames(crops)
    assert torch.allclose(outputs.features, expected.features, atol=1e-5)
    assert torch.allclose(outputs.logits, expected.logits, atol=1e-5)
