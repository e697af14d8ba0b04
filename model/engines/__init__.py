"""The inference engines: a base, one module per backend, the parity gate, the `auto` choice and `build_engine`.

Callers import from here; the backends' own modules are for the few that build one engine directly (tests,
benchmarks). The names settings accept (CPU_ENGINES, DEVICES) live in model/labels.py, which loads no torch.
"""

from __future__ import annotations

from model.engines.base import Calibration, Engine, EngineChoice, EngineError
from model.engines.factory import build_engine, resolve_device
from model.labels import CPU_ENGINES, DEVICES, GATED_CPU_ENGINES

__all__ = [
    "CPU_ENGINES",
    "DEVICES",
    "GATED_CPU_ENGINES",
    "Calibration",
    "Engine",
    "EngineChoice",
    "EngineError",
    "build_engine",
    "resolve_device",
]
