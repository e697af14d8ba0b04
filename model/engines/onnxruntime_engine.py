"""ONNX Runtime fp32 on the CPU over the graph exported from the loaded weights: the parity gate's reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from model.cpu import cpu_budget
from model.engines.base import Engine, score_on
from model.engines.export import export_onnx
from model.network import FrameOutputs, WindowMode
from model.weights import LoadedModel


@dataclass
class OnnxEngine(Engine):
    """ONNX Runtime on the CPU over the graph exported from the loaded weights."""

    loaded: LoadedModel
    cache_dir: Path
    threads: int = 0
    name: str = "onnxruntime-cpu"

    def __post_init__(self) -> None:
        # Imported here, not at the top: ONNX Runtime takes a while to load, and a process that never builds a
        # CPU engine (CUDA, the dashboard, the config) should not pay for it.
        import onnxruntime as ort

        self.device = torch.device("cpu")
        self.graph_path = self._graph()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads or cpu_budget()
        options.inter_op_num_threads = 1
        # Spinning worker threads would steal the cores that decoding and face detection need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.graph_path), options, providers=["CPUExecutionProvider"])

    def _graph(self) -> Path:
        """The graph this engine runs: the fp32 export of the loaded weights (cached by their hash)."""
        return export_onnx(self.loaded, self.cache_dir, self.loaded.preprocessing.input_size)

    def encode(self, batch: Tensor) -> FrameOutputs:
        results = self.session.run(None, {"crops": batch.detach().cpu().float().contiguous().numpy()})
        features = torch.from_numpy(results[0])
        return FrameOutputs(features=features, logits=torch.from_numpy(results[1]) if len(results) > 1 else None)

    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        return score_on(self.loaded.network, window, mode, self.device)
