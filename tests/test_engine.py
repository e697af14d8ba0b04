"""The CPU engine (ONNX Runtime over the exported graph) equals the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from model.engine import EngineError, OnnxEngine, TorchEngine, build_engine, export_onnx
from model.preprocess import crops_to_batch
from model.weights import LoadedModel, random_model
from tests.helpers import astronaut_face_bgr


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    face = astronaut_face_bgr()
    return crops_to_batch([face, face[::-1].copy(), face[20:, 10:], face[:, ::-1].copy(), face[::2, ::2]])


@pytest.mark.parametrize("arch", ["seed", "temporal"])
def test_onnxruntime_matches_torch(arch, crops, engine_cache) -> None:
    loaded = random_model(arch)
    reference = TorchEngine(loaded.network, torch.device("cpu"))
    onnx = build_engine(loaded, "cpu", "onnxruntime", engine_cache)
    assert isinstance(onnx, OnnxEngine)
    for batch in (crops[:1], crops):
        expected, actual = reference.encode(batch), onnx.encode(batch)
        assert torch.allclose(actual.features, expected.features, atol=1e-4)
        if arch == "seed":
            assert torch.allclose(actual.logits, expected.logits, atol=1e-4)
        else:
            assert actual.logits is None
    window = onnx.encode(crops)
    stacked = type(window)(window.features.unsqueeze(0), None if window.logits is None else window.logits.unsqueeze(0))
    assert torch.allclose(onnx.score(stacked, "mean"), reference.score(stacked, "mean"), atol=1e-6)


def test_exported_graph_is_cached_by_weights_hash(seed_model: LoadedModel, engine_cache) -> None:
    first = export_onnx(seed_model, engine_cache, 112)
    modified = first.stat().st_mtime_ns
    assert export_onnx(seed_model, engine_cache, 112) == first
    assert first.stat().st_mtime_ns == modified
    assert seed_model.weights_hash in first.name


def test_bad_device_and_engine_names_are_clear(seed_model) -> None:
    with pytest.raises(EngineError, match="--device must be one of"):
        build_engine(seed_model, "tpu")
    with pytest.raises(EngineError, match="cpu engine must be one of"):
        build_engine(seed_model, "cpu", "tensorrt")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            build_engine(seed_model, "cuda")


def test_torch_precision_is_explicit(seed_model) -> None:
    assert TorchEngine(random_model().network, torch.device("cpu")).name == "torch-cpu-fp32"
    with pytest.raises(EngineError, match="precision must be one of"):
        TorchEngine(random_model().network, torch.device("cpu"), precision="int8")
