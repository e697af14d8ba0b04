"""Test-made media and checkpoints: faces from skimage's astronaut, heads fitted to respond to the input."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from model.network import SeedNet, TemporalNet
from model.preprocess import crops_to_batch
from stream.capture.demo import ASTRONAUT_FACE_BOX, astronaut_bgr


def astronaut_face_bgr() -> np.ndarray:
    """A tight crop around the astronaut's face (110x130 px), writable."""
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    return astronaut_bgr()[y1:y2, x1:x2].copy()


def fit_seed_head(
    network: SeedNet, fake_crops: Sequence[np.ndarray], real_crops: Sequence[np.ndarray], margin: float = 8.0
) -> SeedNet:
    """A copy of `network` whose head calls `fake_crops` FAKE and `real_crops` REAL with logit gap ±`margin`.

    Random weights give p_fake ≈ 0.495 for any input; a head set along the difference of the two groups'
    mean LSTM outputs makes the score depend on the input, so tests can see verdicts, orders and alerts move.
    """
    fitted = copy.deepcopy(network).eval()
    with torch.inference_mode():
        fake = fitted.encode_frames(crops_to_batch(fake_crops)).features.mean(0)
        real = fitted.encode_frames(crops_to_batch(real_crops)).features.mean(0)
    direction = fake - real
    midpoint = (fake + real) / 2
    scale = margin / float((direction * direction).sum() / 2)
    with torch.no_grad():
        weight = torch.stack([direction, -direction]) * scale / 2
        fitted.linear1.weight.copy_(weight)
        fitted.linear1.bias.copy_(-(weight @ midpoint))
    return fitted


def random_temporal(seed: int = 1) -> TemporalNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TemporalNet().eval()


# Tests that only need some engine name one, so none pays for `auto`'s parity gates and micro-benchmark
# (tests/test_engine_choice.py tests those).
PIN_ENGINE = ("--cpu-engine", "onnxruntime")
