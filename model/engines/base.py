"""What every engine is: the `Engine` base, its error, the record of how it was chosen, and the calibration crops."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from model.network import FrameOutputs, SeedNet, TemporalNet, WindowMode

ChoiceHow = Literal["auto", "pinned", "fallback"]


class EngineError(Exception):
    """The requested device or engine cannot run here (e.g. --device cuda without a GPU)."""


@dataclass(frozen=True)
class EngineChoice:
    """What `build_engine` chose, and why.

    `how`: `auto` (the fastest engine passing the parity gate, measured on this machine), `pinned` (the one engine
    asked for by name, or the only one on CUDA), `fallback` (the engine asked for failed the parity gate, so fp32 ONNX
    Runtime runs instead).
    """

    name: str  # the engine that runs (its `Engine.name`)
    how: ChoiceHow
    crops_per_s: float | None = None  # auto: what the micro-benchmark measured for it
    gate: str = ""  # the parity gate's one-line result where it ran for this engine, else ""
    line: str = ""  # auto: the one line `--model-info`, the log and the session row show, else ""


class Engine(ABC):
    """What the pipeline needs from a backend."""

    name: str
    device: torch.device
    choice: EngineChoice | None = None  # set by `build_engine`; None for an engine built directly

    @abstractmethod
    def encode(self, batch: Tensor) -> FrameOutputs:
        """[N, 3, S, S] normalised crops on `device` -> per-crop outputs as CPU float32 tensors."""

    @abstractmethod
    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        """Cached outputs [B, T, ...] -> p_fake [B] on the CPU."""


@dataclass(frozen=True)
class Calibration:
    """Real face crops (HxWx3 uint8 BGR, cut by the serving pipeline) for the int8 engine: `fit` calibrates it,
    `held_back` (never seen by the calibration) is what the parity gate compares on, in windows of `window`."""

    fit: Sequence[np.ndarray]
    held_back: Sequence[np.ndarray]
    window: int


def require_calibration(cpu_engine: str, calibration: Calibration | None) -> Calibration:
    """`calibration`, or an EngineError saying that `cpu_engine` needs it."""
    if calibration is None:
        raise EngineError(
            f"the {cpu_engine} engine needs calibration face crops for its parity gate; use --cpu-engine onnxruntime"
        )
    return calibration


def score_on(network: SeedNet | TemporalNet, window: FrameOutputs, mode: WindowMode, device: torch.device) -> Tensor:
    """The window head of `network` on `device` over cached outputs: what every engine's `score` runs."""
    moved = FrameOutputs(
        features=window.features.to(device, non_blocking=True),
        logits=None if window.logits is None else window.logits.to(device, non_blocking=True),
    )
    with torch.inference_mode():
        return network.score_window(moved, mode).float().cpu()
