"""The calibration's spread of window scores, and whether a threshold ± hysteresis band leaves verdicts room to move."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The live verdict policy's default hysteresis (stream/config/sections.py VerdictPolicy; a test keeps the two equal:
# model/ imports nothing from stream/).
SERVING_HYSTERESIS = 0.1
PERCENTILES = np.linspace(0.0, 100.0, 101)  # what a calibrated checkpoint keeps of its held-out scores
# A band that holds more than this share of the scores keeps most verdicts UNSURE.
MOSTLY_UNSURE = 0.5
# The suggested hysteresis leaves this share of the scores outside the band, free to become REAL or FAKE.
DECIDED_SHARE = 0.8


def score_percentiles(scores: np.ndarray) -> list[float]:
    """Percentiles 0..100 of held-out window scores: small enough to keep in a checkpoint, enough to judge a band."""
    return [round(float(v), 6) for v in np.percentile(np.asarray(scores, np.float64), PERCENTILES)]


def spread_of(metrics: Mapping[str, Any]) -> list[float] | None:
    """The score percentiles a calibration recorded (`model.evaluate --calibrate`), None when it recorded none."""
    evaluation = metrics.get("evaluation")
    values = evaluation.get("score_percentiles") if isinstance(evaluation, Mapping) else None
    if not isinstance(values, Sequence) or len(values) != len(PERCENTILES):
        return None
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def served_hysteresis(threshold: float, hysteresis: float) -> float:
    """The hysteresis the live policy uses with a checkpoint's threshold: narrowed near 0 or 1 so both bands fit."""
    return min(hysteresis, min(threshold, 1.0 - threshold) / 2)


def band_share(percentiles: Sequence[float], threshold: float, hysteresis: float) -> float:
    """The share of the scores strictly inside (threshold - hysteresis, threshold + hysteresis): rolling scores there
    leave a face UNSURE."""
    values = np.asarray(percentiles, np.float64)
    return float(((values > threshold - hysteresis) & (values < threshold + hysteresis)).mean())


def suggested_hysteresis(percentiles: Sequence[float], threshold: float) -> float:
    """A hysteresis that leaves DECIDED_SHARE of the scores outside the band (kept inside (0, 1) around threshold)."""
    distances = np.abs(np.asarray(percentiles, np.float64) - threshold)
    suggestion = float(np.quantile(distances, 1.0 - DECIDED_SHARE))
    limit = min(threshold, 1.0 - threshold)
    return float(f"{min(suggestion, limit * 0.99):.2g}")


def unsure_warning(percentiles: Sequence[float] | None, threshold: float, hysteresis: float) -> str | None:
    """One line when the band covers most of the calibration's scores (verdicts will stay UNSURE), else None."""
    if percentiles is None:
        return None
    share = band_share(percentiles, threshold, hysteresis)
    if share <= MOSTLY_UNSURE:
        return None
    return (
        f"verdicts will stay UNSURE: threshold {threshold:.3f} ± {hysteresis:.3f} covers {100 * share:.0f}% of the "
        f"calibration's window scores ({percentiles[0]:.3f}–{percentiles[-1]:.3f}); a hysteresis of "
        f"{suggested_hysteresis(percentiles, threshold):g} leaves {100 * DECIDED_SHARE:.0f}% of them outside it"
    )
