"""The model layer's names that other layers show: label order, architecture names, window limits, the
uncalibrated wording, the device and CPU engine names settings accept.

Imports nothing heavy (no torch, no numpy), so the store and the dashboard can show these names without
loading the model.
"""

from __future__ import annotations

import re

LABEL_ORDER: tuple[str, str] = ("FAKE", "REAL")  # index 0 = FAKE, index 1 = REAL (seed-notes.md)
ARCHITECTURE_NAMES: tuple[str, ...] = ("seed", "temporal")
UNCALIBRATED_WARNING = "UNCALIBRATED: this checkpoint's scores are not calibrated"
# Window lengths any checkpoint serves (the original six were trained on 10 to 100 frames).
MIN_WINDOW, MAX_WINDOW = 10, 100

# Devices and CPU engines as settings and flags spell them (model/engines/ builds them).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")  # cuda:N: the N-th CUDA GPU (0-based)
CUDA_INDEX = re.compile(r"cuda:(\d+)")
CPU_ENGINES: tuple[str, ...] = ("auto", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8", "torch")
# Engines whose outputs may differ from fp32 ONNX Runtime by more than rounding: each must pass the parity gate.
GATED_CPU_ENGINES: tuple[str, ...] = ("onnxruntime-int8", "openvino", "openvino-int8")


def is_device_name(device: str) -> bool:
    """Whether `device` is spelled as one of DEVICES (auto, cpu, cuda, cuda:N with N a non-negative integer)."""
    return device in ("auto", "cpu", "cuda") or CUDA_INDEX.fullmatch(device) is not None
