"""Detection metrics with numpy alone: ROC, AUC, EER, accuracy at a threshold, the threshold for a target
false-alarm rate, and reliability (calibration) bins. Labels: 1 = FAKE (the positive class), 0 = REAL."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


class MetricError(ValueError):
    """Scores that cannot give the metric (one class only, empty, not finite)."""


def _checked(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels, dtype=np.int64).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise MetricError(f"{labels.size} labels but {scores.size} scores")
    if not np.isfinite(scores).all():
        raise MetricError("scores must be finite")
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        raise MetricError(f"needs both REAL and FAKE samples, got {labels.size - positives} REAL and {positives} FAKE")
    return labels, scores


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability a FAKE scores above a REAL (ties count half; Mann-Whitney U)."""
    labels, scores = _checked(labels, scores)
    ranks = rankdata(scores)
    positives = labels.sum()
    negatives = labels.size - positives
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@dataclass(frozen=True)
class Roc:
    """`fpr[i]`, `tpr[i]`: the rates when a score >= `thresholds[i]` is called FAKE (thresholds descending)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc(labels: np.ndarray, scores: np.ndarray) -> Roc:
    labels, scores = _checked(labels, scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_each]
    false_pos = (last_of_each + 1) - true_pos
    tpr = np.r_[0.0, true_pos / labels.sum()]
    fpr = np.r_[0.0, false_pos / (labels.size - labels.sum())]
    thresholds = np.r_[np.inf, sorted_scores[last_of_each]]
    return Roc(fpr, tpr, thresholds)


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false-alarm rate equals the miss rate (linear between ROC points)."""
    curve = roc(labels, scores)
    miss = 1.0 - curve.tpr
    gap = curve.fpr - miss  # rises from -1 to +1 along the curve
    index = int(np.argmax(gap >= 0))
    if index == 0:
        return float(curve.fpr[0])
    g0, g1 = gap[index - 1], gap[index]
    weight = 0.0 if g1 == g0 else -g0 / (g1 - g0)
    return float(curve.fpr[index - 1] + weight * (curve.fpr[index] - curve.fpr[index - 1]))


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """The share called right when a score >= `threshold` is called FAKE."""
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    return float(((scores >= threshold).astype(np.int64) == labels).mean())


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    fpr: float
    tpr: float


def threshold_for_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> OperatingPoint:
    """The lowest threshold whose false-alarm rate on these REAL scores is at most `target_fpr` (score >= it is
    FAKE), kept inside (0, 1) so the live verdict policy accepts it."""
    if not 0.0 <= target_fpr < 1.0:
        raise MetricError(f"the target false-alarm rate must be in [0, 1), got {target_fpr}")
    labels, scores = _checked(labels, scores)
    real = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(target_fpr * real.size + 1e-9))  # REAL scores that may lie at or above the threshold
    threshold = float(np.nextafter(real[allowed], np.inf)) if allowed < real.size else float(real[-1])
    threshold = float(np.clip(threshold, 1e-6, 1.0 - 1e-6))
    called = scores >= threshold
    return OperatingPoint(threshold, float(called[labels == 0].mean()), float(called[labels == 1].mean()))


@dataclass(frozen=True)
class Reliability:
    """Per bin of predicted p_fake: its mean prediction, the observed share of FAKE, and how many samples."""

    predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray
    ece: float  # expected calibration error: the count-weighted mean |predicted - observed|


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> Reliability:
    labels, scores = np.asarray(labels, dtype=np.float64).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    index = np.clip((scores * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(index, weights=scores, minlength=bins) / counts
        observed = np.bincount(index, weights=labels, minlength=bins) / counts
    filled = counts > 0
    ece = float((np.abs(predicted - observed)[filled] * counts[filled]).sum() / max(counts.sum(), 1))
    return Reliability(predicted, observed, counts.astype(np.int64), ece)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    rounds: int


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    clusters: np.ndarray | None = None,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """A percentile bootstrap interval for the AUC (seeded, so a report is reproducible). `clusters` (e.g. each
    window's video) are resampled whole, within their label: windows of one video are not independent samples."""
    labels, scores = _checked(labels, scores)
    clusters = np.arange(labels.size) if clusters is None else np.asarray(clusters).ravel()
    if clusters.shape != labels.shape:
        raise MetricError(f"{labels.size} labels but {clusters.size} cluster ids")
    rng = np.random.default_rng(seed)
    members: dict[int, list[np.ndarray]] = {}
    for label in (0, 1):
        ids = np.unique(clusters[labels == label])
        members[label] = [np.flatnonzero((clusters == c) & (labels == label)) for c in ids]
    values = np.empty(rounds)
    for r in range(rounds):
        picked = [
            members[label][i] for label in (0, 1) for i in rng.integers(0, len(members[label]), len(members[label]))
        ]
        chosen = np.concatenate(picked)
        values[r] = auc(labels[chosen], scores[chosen])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), level, rounds)
