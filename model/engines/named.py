"""A CPU engine by the name `--cpu-engine` gives it, built as it is: no parity gate, no choice."""

from __future__ import annotations

from pathlib import Path

import torch

from model.engines.base import Calibration, Engine, EngineError, require_calibration
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import OnnxInt8Engine
from model.engines.openvino_engine import openvino_engine, openvino_version
from model.engines.torch_engine import TorchEngine
from model.labels import CPU_ENGINES
from model.weights import LoadedModel


def cpu_engine_named(name: str, loaded: LoadedModel, cache_dir: Path, calibration: Calibration | None) -> Engine:
    """The CPU engine called `name` (one of CPU_ENGINES but auto), built without its gate. EngineError when its
    runtime is not installed."""
    if name == "onnxruntime":
        return OnnxEngine(loaded, cache_dir)
    if name == "torch":
        return TorchEngine(loaded.network, torch.device("cpu"))
    if name == "onnxruntime-int8":
        return OnnxInt8Engine(loaded, cache_dir, calibration_crops=require_calibration(name, calibration).fit)
    if name.startswith("openvino"):
        if openvino_version() is None:
            raise EngineError(f"the {name} engine needs OpenVINO (pip install openvino); use --cpu-engine onnxruntime")
        precision = name.partition("-")[2] or "fp32"
        fit = require_calibration(name, calibration).fit if precision == "int8" else ()
        return openvino_engine(loaded, cache_dir, precision, fit)
    raise EngineError(f"cpu engine must be one of {', '.join(CPU_ENGINES)}, got {name!r}")
