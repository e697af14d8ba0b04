"""The int8 engine: only the backbone's convolutions are quantised, it keeps the Engine protocol, and its
graph is cached by (weights hash, calibration set, ONNX Runtime version)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from model.engines import Calibration, EngineError, build_engine
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import OnnxInt8Engine, int8_graph_path, quantize_encoder
from model.network import FrameOutputs
from model.preprocess import crops_to_batch
from model.weights import LoadedModel
from tests.crop_sets import calibration_crops, held_back_crops, responsive_seed_model


@pytest.fixture(scope="module")
def responsive() -> LoadedModel:
    return responsive_seed_model()


@pytest.fixture(scope="module")
def int8(responsive, engine_cache) -> OnnxInt8Engine:
    return OnnxInt8Engine(responsive, engine_cache, calibration_crops=calibration_crops())


def test_only_the_backbone_convolutions_are_quantised(int8) -> None:
    graph = onnx.load(str(int8.graph_path)).graph
    producer = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 53  # every convolution of resnext50_32x4d
    for conv in convs:  # activations and weights both come through DequantizeLinear: int8 kernels
        assert producer[conv.input[0]].op_type == "DequantizeLinear", conv.name
        weight = producer[conv.input[1]]
        assert weight.op_type == "DequantizeLinear"
        assert initializers[weight.input[0]].data_type == onnx.TensorProto.INT8
    for op_type in ("LSTM", "Gemm", "GlobalAveragePool"):
        (node,) = [node for node in graph.node if node.op_type == op_type]
        for name in node.input:
            assert name not in producer or producer[name].op_type != "DequantizeLinear", (op_type, name)
            if name in initializers:
                assert initializers[name].data_type == onnx.TensorProto.FLOAT, (op_type, name)


def test_int8_engine_keeps_the_engine_protocol_and_an_exact_fp32_head(int8, responsive) -> None:
    assert int8.name == "onnxruntime-int8"
    assert int8.device == torch.device("cpu")
    crops = held_back_crops(6)
    for batch in (crops_to_batch(crops[:1]), crops_to_batch(crops)):
        outputs = int8.encode(batch)
        assert outputs.features.shape == (len(batch), 2048) and outputs.features.dtype == torch.float32
        assert outputs.logits.shape == (len(batch), 2)
        with torch.inference_mode():  # the head runs in fp32 on the (int8-backbone) LSTM output
            head = responsive.network.linear1(outputs.features)
        assert torch.allclose(outputs.logits, head, atol=1e-5)
    window = FrameOutputs(outputs.features.unsqueeze(0), outputs.logits.unsqueeze(0))
    assert int8.score(window, "mean").shape == (1,)


def test_int8_graph_is_cached_by_weights_calibration_and_ort_version(int8, responsive, seed_model, engine_cache):
    crops = calibration_crops()
    path = int8_graph_path(responsive, crops, engine_cache)
    assert path == int8.graph_path and path.is_file()
    written = path.stat().st_mtime_ns
    assert quantize_encoder(responsive, crops, engine_cache) == path  # a second engine reuses the file
    assert path.stat().st_mtime_ns == written
    assert responsive.weights_hash in path.name and f"ort{onnxruntime.__version__}" in path.name
    assert int8_graph_path(seed_model, crops, engine_cache) != path  # another checkpoint
    other_crops = [*crops[:-1], np.ascontiguousarray(crops[-1][::-1])]
    assert int8_graph_path(responsive, other_crops, engine_cache) != path  # another calibration set
    assert int8_graph_path(responsive, crops, engine_cache, reduce_range=True) != int8_graph_path(
        responsive, crops, engine_cache, reduce_range=False
    )


def test_int8_engine_needs_real_calibration_crops(seed_model, tmp_path) -> None:
    with pytest.raises(EngineError, match="needs face crops"):
        OnnxInt8Engine(seed_model, tmp_path)
    with pytest.raises(EngineError, match="HxWx3 uint8"):
        OnnxInt8Engine(seed_model, tmp_path, calibration_crops=[np.zeros((112, 112, 3), np.float32)])
    assert not list(tmp_path.iterdir())  # nothing exported or quantised for a refused request


def test_build_engine_uses_int8_only_when_it_passes_the_gate(responsive, engine_cache) -> None:
    good = build_engine(
        responsive, "cpu", "onnxruntime-int8", engine_cache, Calibration(calibration_crops(), held_back_crops(), 8)
    )
    assert isinstance(good, OnnxInt8Engine) and good.choice is not None and good.choice.gate.startswith("parity PASS")
    assert good.choice.how == "pinned" and good.choice.name == "onnxruntime-int8"
    black = [np.zeros_like(crop) for crop in calibration_crops()]  # a broken calibration
    refused = build_engine(
        responsive, "cpu", "onnxruntime-int8", engine_cache, Calibration(black, held_back_crops(), 8)
    )
    assert type(refused) is OnnxEngine and refused.name == "onnxruntime-cpu"
    assert refused.choice is not None and refused.choice.gate.startswith("parity FAIL")
    assert refused.choice.how == "fallback"
    with pytest.raises(EngineError, match="calibration"):
        build_engine(responsive, "cpu", "onnxruntime-int8", engine_cache)
