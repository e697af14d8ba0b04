"""The encoder as an ONNX graph (what ONNX Runtime and OpenVINO run), exported once per weights hash into the cache."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from model.network import SeedNet, TemporalNet
from model.weights import LoadedModel


class _EncoderGraph(nn.Module):
    """`encode_frames` as a module with tensor outputs, the form the ONNX exporter takes."""

    def __init__(self, network: SeedNet | TemporalNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, crops: Tensor) -> tuple[Tensor, ...]:
        outputs = self.network.encode_frames(crops)
        return (outputs.features,) if outputs.logits is None else (outputs.features, outputs.logits)


def default_cache_dir() -> Path:
    """Where exported graphs are kept: $DEEPFAKE_STREAM_CACHE, else ~/.cache/deepfake-stream."""
    explicit = os.environ.get("DEEPFAKE_STREAM_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepfake-stream"


def export_onnx(loaded: LoadedModel, cache_dir: Path, input_size: int) -> Path:
    """The encoder as an ONNX graph with a dynamic batch axis, exported once per weights hash."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"encoder-{loaded.arch}-{loaded.weights_hash}-{input_size}.onnx"
    if path.is_file():
        return path
    graph = _EncoderGraph(loaded.network).eval()
    outputs = ["features"] if loaded.arch == "temporal" else ["features", "logits"]
    # Write to a temporary name and rename, so a concurrent process never reads half a file.
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".onnx.part", delete=False) as handle:
        partial = Path(handle.name)
    try:
        # The TorchScript exporter warns about the LSTM's Python-side shape checks; the graph is verified
        # against PyTorch in tests, so the warnings only add noise to a user's terminal.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (torch.zeros(1, 3, input_size, input_size),),
                str(partial),
                input_names=["crops"],
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["crops", *outputs]},
                opset_version=17,
                dynamo=False,
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
