"""`build_engine`: the engine for a checkpoint on a device, by name or by `auto`, with how it was chosen."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from model.engines.base import Calibration, Engine, EngineChoice, EngineError, require_calibration
from model.engines.choice import choose_cpu_engine
from model.engines.export import default_cache_dir
from model.engines.named import cpu_engine_named
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.parity import check_parity
from model.engines.torch_engine import TorchEngine
from model.labels import CPU_ENGINES, CUDA_INDEX, DEVICES, GATED_CPU_ENGINES, is_device_name
from model.weights import LoadedModel

log = logging.getLogger("deepfake_stream")


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA (or a GPU index) that is not there is an EngineError."""
    if not isinstance(device, str) or not is_device_name(device):
        raise EngineError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(f"--device {device} was asked for but no CUDA GPU is available; use --device auto or cpu")
        index = CUDA_INDEX.fullmatch(device)
        count = torch.cuda.device_count()
        if index is not None and int(index.group(1)) >= count:
            raise EngineError(
                f"--device {device} was asked for but this machine has {count} CUDA GPU(s): cuda:0..cuda:{count - 1}"
            )
    return torch.device(device)


def build_engine(
    loaded: LoadedModel,
    device: str = "auto",
    cpu_engine: str = "auto",
    cache_dir: Path | None = None,
    calibration: Calibration | None = None,
) -> Engine:
    """The backend for `loaded` on `device`; on the CPU, `cpu_engine` by name, or `auto`: the fastest engine that
    passes the parity gate on this machine (a cached micro-benchmark, model/engines/choice.py). A gated engine is
    used only when it passes against fp32 ONNX Runtime on `calibration.held_back`; otherwise fp32 ONNX Runtime,
    with a warning. The engine's `choice` says which and why."""
    if cpu_engine not in CPU_ENGINES:
        raise EngineError(f"cpu engine must be one of {', '.join(CPU_ENGINES)}, got {cpu_engine!r}")
    chosen_device = resolve_device(device)
    if chosen_device.type == "cuda":
        return _pinned(TorchEngine(loaded.network, chosen_device))
    cache = cache_dir or default_cache_dir()
    if cpu_engine == "auto":
        return choose_cpu_engine(loaded, cache, require_calibration(cpu_engine, calibration))
    if cpu_engine in GATED_CPU_ENGINES:
        return gated_engine(cpu_engine, loaded, cache, require_calibration(cpu_engine, calibration))
    return _pinned(cpu_engine_named(cpu_engine, loaded, cache, calibration))


def _pinned(engine: Engine) -> Engine:
    engine.choice = EngineChoice(name=engine.name, how="pinned")
    return engine


def gated_engine(name: str, loaded: LoadedModel, cache_dir: Path, calibration: Calibration) -> Engine:
    """Engine `name` if it passes the parity gate against fp32 ONNX Runtime on `calibration.held_back`, else fp32
    ONNX Runtime with a warning; its `choice` says which (pinned or fallback) and why (the gate's line)."""
    reference = OnnxEngine(loaded, cache_dir)
    candidate = cpu_engine_named(name, loaded, cache_dir, calibration)
    result = check_parity(reference, candidate, calibration.held_back, loaded.preprocessing, calibration.window)
    chosen = candidate if result.passed else reference
    chosen.choice = EngineChoice(
        name=chosen.name, how="pinned" if result.passed else "fallback", gate=result.describe()
    )
    if not result.passed:
        log.warning("the %s engine was refused by the parity gate, using fp32: %s", name, result.describe())
    return chosen
