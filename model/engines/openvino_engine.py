"""OpenVINO on the CPU over the same ONNX graphs ONNX Runtime runs, fp32 or int8.

The graph is the fp32 export, or the int8 (QDQ) graph of model/engines/onnxruntime_int8.py, which OpenVINO turns
into its own int8 kernels. Everything not quantised runs in fp32: OpenVINO's default on CPUs with bf16 is to run
the whole graph in bf16, LSTM and head included, and that moved p_fake by 0.02 on a responsive head, past the
parity gate (tests/test_engine_choice.py keeps that engine out).

Live batches are mostly one or two crops: those two shapes are compiled static (bench/encode.py measured a static
batch 1 ~20% faster than the dynamic graph on the same CPU); every other batch size runs the dynamic graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.cpu import cpu_budget
from model.engines.base import Engine, score_on
from model.engines.export import export_onnx
from model.engines.onnxruntime_int8 import quantize_encoder
from model.network import FrameOutputs, WindowMode
from model.weights import LoadedModel

OPENVINO_PRECISIONS = ("fp32", "int8")
STATIC_BATCHES = (1, 2)


def openvino_version() -> str | None:
    """The installed OpenVINO runtime's version, None when it is not installed."""
    try:
        import openvino  # here, not at the top: optional, and heavy to load
    except ImportError:
        return None
    return openvino.get_version().split("-")[0]


@dataclass
class OpenVinoEngine(Engine):
    """`encode_frames` through OpenVINO's CPU plugin over `graph` (an ONNX file of the encoder with a dynamic
    batch axis). `precision`: fp32, or int8 for a QDQ graph (its convolutions int8, the rest fp32). Pooling, the
    LSTM step and the head are in the graph; `score` runs the loaded network's window head in PyTorch, as the
    ONNX Runtime engines do."""

    loaded: LoadedModel
    graph: Path
    precision: str = "fp32"
    threads: int = 0  # 0: the CPUs this process may use
    name: str = ""
    _requests: dict[int | None, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import openvino as ov  # here, not at the top: optional, and heavy to load

        if self.precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(OPENVINO_PRECISIONS)}, got {self.precision!r}")
        self.device = torch.device("cpu")
        self.name = self.name or ("openvino" if self.precision == "fp32" else f"openvino-{self.precision}")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads or cpu_budget(),
            # Pinned threads cannot move off a core that decoding or face detection is using.
            "ENABLE_CPU_PINNING": False,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        core = ov.Core()
        self.outputs = 1 if self.loaded.arch == "temporal" else 2
        size = self.loaded.preprocessing.input_size
        for batch in (*STATIC_BATCHES, None):
            model = core.read_model(str(self.graph))
            model.reshape({"crops": [-1 if batch is None else batch, 3, size, size]})
            self._requests[batch] = core.compile_model(model, "CPU", config).create_infer_request()

    def encode(self, batch: Tensor) -> FrameOutputs:
        crops = batch.detach().cpu().float().contiguous().numpy()
        request = self._requests.get(len(crops), self._requests[None])
        results = request.infer({0: crops})
        values = [np.array(results[index], copy=True) for index in range(self.outputs)]
        return FrameOutputs(
            features=torch.from_numpy(values[0]), logits=torch.from_numpy(values[1]) if len(values) > 1 else None
        )

    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        return score_on(self.loaded.network, window, mode, self.device)


def openvino_engine(
    loaded: LoadedModel, cache_dir: Path, precision: str, calibration_crops: Sequence[np.ndarray]
) -> OpenVinoEngine:
    """The OpenVINO engine of `precision` over the graph it runs (int8: quantised with `calibration_crops`)."""
    if precision == "int8":
        graph = quantize_encoder(loaded, calibration_crops, cache_dir, None)
    else:
        graph = export_onnx(loaded, cache_dir, loaded.preprocessing.input_size)
    return OpenVinoEngine(loaded, graph, precision)
