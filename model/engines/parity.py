"""The parity gate: an engine other than the fp32 reference is used only if its outputs stay close to the reference's.

On a held-back set of face crops (not the calibration set), both engines encode the same batches; the gate
compares every crop's 2048-d feature vector (`FrameOutputs.features`: the one-step LSTM output for the seed
arch, the pooled backbone vector for ours) by cosine, and every window of `window` consecutive crops by its
score, p_fake from `engine.score(outputs, mode)`. Both must stay within the tolerances below.

|Δp_fake| only means something with a checkpoint whose head responds to its input: the seeded random head
gives p_fake ≈ 0.495 for anything, so any engine "agrees" with it. `ParityResult.p_fake_spread` (how far the
reference's window scores range over the set) says whether the check had anything to see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.engines.base import Engine
from model.network import FrameOutputs, WindowMode
from model.preprocess import Preprocessing, crops_to_batch

# The tolerances, in one place.
FEATURE_COSINE_MIN = 0.999  # the lowest 2048-d feature cosine over all crops
P_FAKE_DELTA_MAX = 0.01  # the largest |Δp_fake| over all windows
# Below this spread of the reference's window scores, |Δp_fake| proves little (describe() says so).
RESPONSIVE_SPREAD_MIN = 0.1


@dataclass(frozen=True)
class ParityResult:
    """The gate's verdict on `candidate` against `reference`, with the figures it was decided on."""

    reference: str
    candidate: str
    crops: int
    window: int
    windows: int
    feature_cosine_min: float
    p_fake_delta_max: float
    p_fake_spread: float  # max - min of the reference's window scores
    passed: bool

    def describe(self) -> str:
        """One line for logs, `--model-info` and the session row."""
        verdict = "PASS" if self.passed else "FAIL"
        line = (
            f"parity {verdict}: {self.candidate} vs {self.reference}: feature cosine min "
            f"{self.feature_cosine_min:.5f} (>= {FEATURE_COSINE_MIN}), max |dp_fake| {self.p_fake_delta_max:.4f} "
            f"(<= {P_FAKE_DELTA_MAX}) over {self.crops} crops, {self.windows} windows of {self.window}"
        )
        if not self.p_fake_spread >= RESPONSIVE_SPREAD_MIN:
            line += f"; reference scores span only {self.p_fake_spread:.4f}: the head barely responds"
        return line


def _encode(engine: Engine, batch: torch.Tensor, batch_size: int) -> FrameOutputs:
    parts = [engine.encode(batch[i : i + batch_size].to(engine.device)) for i in range(0, len(batch), batch_size)]
    features = torch.cat([p.features.float().cpu() for p in parts])
    logits = None if parts[0].logits is None else torch.cat([p.logits.float().cpu() for p in parts])
    return FrameOutputs(features=features, logits=logits)


def _windows(outputs: FrameOutputs, window: int) -> FrameOutputs:
    """Every run of `window` consecutive crops (stride 1, as a face's ring sees them): [W, window, ...]."""

    def slide(t: torch.Tensor) -> torch.Tensor:
        return t.unfold(0, window, 1).movedim(-1, 1).contiguous()  # [N, D] -> [N - window + 1, window, D]

    return FrameOutputs(
        features=slide(outputs.features), logits=None if outputs.logits is None else slide(outputs.logits)
    )


def _worst_if_nan(value: float, worst: float) -> float:
    return worst if math.isnan(value) else value


def check_parity(
    reference: Engine,
    candidate: Engine,
    crops: Sequence[np.ndarray],
    preprocessing: Preprocessing,
    window: int,
    mode: WindowMode = "mean",
    batch_size: int = 8,
) -> ParityResult:
    """Encode `crops` (HxWx3 uint8 BGR, held back from any calibration) with both engines and compare.

    Passes when every crop's feature cosine is >= FEATURE_COSINE_MIN and every window's |Δp_fake| is
    <= P_FAKE_DELTA_MAX. Both engines see the same batches of `batch_size`; NaN or inf outputs fail.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if len(crops) < window:
        raise ValueError(f"the parity check needs at least one window: {len(crops)} crops < window {window}")
    batch = crops_to_batch(crops, preprocessing)
    expected = _encode(reference, batch, batch_size)
    got = _encode(candidate, batch, batch_size)
    if got.features.shape != expected.features.shape:
        raise ValueError(
            f"{candidate.name} gives features {tuple(got.features.shape)}, "
            f"{reference.name} {tuple(expected.features.shape)}"
        )
    cosine = torch.nn.functional.cosine_similarity(got.features.double(), expected.features.double(), dim=1)
    p_expected = reference.score(_windows(expected, window), mode).double()
    p_got = candidate.score(_windows(got, window), mode).double()
    # torch's min/max carry a NaN through; a NaN figure is the worst one, so it fails the gate.
    cosine_min = _worst_if_nan(float(cosine.min()), -1.0)
    delta_max = _worst_if_nan(float((p_got - p_expected).abs().max()), math.inf)
    spread = float(p_expected.max() - p_expected.min())
    return ParityResult(
        reference=reference.name,
        candidate=candidate.name,
        crops=len(crops),
        window=window,
        windows=len(p_expected),
        feature_cosine_min=cosine_min,
        p_fake_delta_max=delta_max,
        p_fake_spread=spread,
        passed=cosine_min >= FEATURE_COSINE_MIN and delta_max <= P_FAKE_DELTA_MAX,
    )
