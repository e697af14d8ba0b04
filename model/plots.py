"""The evaluation's two pictures, as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from model.scoring import Reliability, Roc


def plot_roc(curves: dict[str, tuple[Roc, float]], path: Path, marked: tuple[float, float] | None = None) -> Path:
    """ROC curves by level ({"video": (roc, auc), ...}); `marked`: (fpr, tpr) of the chosen threshold."""
    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (curve, area) in curves.items():
        axes.plot(curve.fpr, curve.tpr, label=f"{name} (AUC {area:.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    if marked is not None:
        axes.plot([marked[0]], [marked[1]], "o", color="black", label="chosen threshold")
    axes.set(xlabel="false alarm rate (REAL called FAKE)", ylabel="detection rate (FAKE called FAKE)", title="ROC")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_reliability(bins: Reliability, path: Path) -> Path:
    """Predicted p_fake against the observed share of FAKE per bin (the diagonal is perfect calibration)."""
    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    filled = bins.counts > 0
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    axes.plot(bins.predicted[filled], bins.observed[filled], "o-", label=f"model (ECE {bins.ece:.3f})")
    axes.set(xlabel="predicted p_fake", ylabel="observed share of FAKE", title="reliability (frame level)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
