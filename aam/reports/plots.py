"""Figures of the baseline and the comparison report (SVG, optionally PNG), written atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import confusion_matrix, roc_curve  # noqa: E402

from aam.atomic import atomic_path  # noqa: E402

METRIC_LABELS = {"r2": "R²", "mae": "MAE", "rmse": "RMSE", "accuracy": "accuracy",
                 "balanced_accuracy": "balanced accuracy", "f1_macro": "macro F1",
                 "auc": "ROC AUC"}
plt.rcParams.update({"svg.hashsalt": "aam", "svg.fonttype": "none", "font.size": 9})


def save_figure(fig, path: str | os.PathLike, png: bool = True) -> list[Path]:
    """Save ``fig`` as SVG at ``path`` (and PNG beside it), atomically; close it; return paths."""
    path = Path(path)
    written = []
    targets = [(path, "svg")] + ([(path.with_suffix(".png"), "png")] if png else [])
    for target, fmt in targets:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120,
                        metadata={"Date": None} if fmt == "svg" else None)
        written.append(target)
    plt.close(fig)
    return written


def _grid(n: int, width: float = 3.2, share: bool = False):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, width * rows + 0.4),
                             squeeze=False, layout="constrained", sharex=share, sharey=share)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name.replace("_", "\n")


def scatter_predicted_actual(ax, actual, predicted, title: str, target: str) -> None:
    """Predicted vs actual with the identity line; R² and MAE in the corner."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    lo = float(min(actual.min(), predicted.min()))
    hi = float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--", label="identity")
    ax.scatter(actual, predicted, s=10, alpha=0.6, color="C0", edgecolor="none")
    ss_tot = np.sum((actual - actual.mean()) ** 2)
    r2 = 1 - np.sum((predicted - actual) ** 2) / ss_tot if ss_tot > 0 else float("nan")
    ax.text(0.03, 0.97, f"pooled R² = {r2:.2f}\nMAE = {np.mean(np.abs(predicted - actual)):.2f}\n"
            f"n = {actual.size}", transform=ax.transAxes, va="top", fontsize=8)
    ax.set(title=_short(title), xlabel=f"actual {target}", ylabel=f"predicted {target}")


def predicted_vs_actual(frames: dict[str, pd.DataFrame], target: str = "target"):
    """One panel per model: predicted vs actual over all its runs (regression)."""
    fig, axes = _grid(len(frames))
    for ax, (name, frame) in zip(axes, frames.items()):
        scatter_predicted_actual(ax, frame["actual"], frame["prediction"], name, target)
    fig.suptitle(f"Predicted vs actual {target} (held-out samples)")
    return fig


def residuals(frames: dict[str, pd.DataFrame], target: str = "target"):
    """One panel per model: residual (predicted - actual) against actual, shared axes."""
    fig, axes = _grid(len(frames), share=True)
    for ax, (name, frame) in zip(axes, frames.items()):
        actual = frame["actual"].to_numpy(float)
        ax.axhline(0, color="0.6", lw=1, ls="--")
        ax.scatter(actual, frame["prediction"].to_numpy(float) - actual, s=10, alpha=0.6,
                   edgecolor="none")
        ax.set(title=_short(name), xlabel=f"actual {target}",
               ylabel=f"residual (predicted - actual {target})")
    fig.suptitle(f"Residuals of {target} by model")
    return fig


def confusion(frames: dict[str, pd.DataFrame], classes: list[str]):
    """One confusion matrix per model, rows actual, columns predicted (counts)."""
    fig, axes = _grid(len(frames), width=3.0 + 0.25 * len(classes))
    for ax, (name, frame) in zip(axes, frames.items()):
        known = frame[frame["actual"].notna()]
        matrix = confusion_matrix(known["actual"].astype(str), known["prediction"].astype(str),
                                  labels=classes)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, rotation=45, ha="right")
        ax.set_yticks(ticks, classes)
        ax.set(title=_short(name), xlabel="predicted class", ylabel="actual class")
    fig.suptitle("Confusion matrices (counts of held-out samples)")
    return fig


def roc(frames: dict[str, pd.DataFrame], classes: list[str]):
    """ROC curves of all models in one panel (binary: positive class = ``classes[1]``;
    multiclass: one-vs-rest curve of each model's pooled scores, micro-averaged)."""
    fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="chance")
    for name, frame in frames.items():
        known = frame[frame["actual"].notna()]
        cols = [f"prob_{c}" for c in classes]
        if len(classes) == 2:
            truth, score = known["actual"].astype(str) == classes[1], known[cols[1]]
        else:
            onehot = known["actual"].astype(str).to_numpy()[:, None] == np.array(classes)
            truth, score = onehot.ravel(), known[cols].to_numpy().ravel()
        if len(set(np.asarray(truth))) < 2:
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        ax.plot(fpr, tpr, lw=1.5, label=name)
    positive = f" (positive class: {classes[1]})" if len(classes) == 2 else " (micro-average)"
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title=f"ROC curves{positive}")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def metric_intervals(table: pd.DataFrame, metric: str):
    """Mean ± sd of ``metric`` per model (dots) and the difference to RF with its bootstrap CI.

    ``table`` is the comparison table: columns model, ``<metric>_mean``, ``<metric>_sd``,
    ``<metric>_diff``, ``<metric>_ci_low``, ``<metric>_ci_high``.
    """
    label = METRIC_LABELS.get(metric, metric)
    height = 1.2 + 0.35 * len(table)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, height), sharey=True,
                                      layout="constrained")
    y = np.arange(len(table))[::-1]
    left.errorbar(table[f"{metric}_mean"], y, xerr=table[f"{metric}_sd"].fillna(0), fmt="o",
                  capsize=3)
    left.set_yticks(y, [_short(m, 60) for m in table["model"]])
    left.set_ylim(-0.6, len(table) - 0.4)
    left.set(xlabel=f"{label} (mean ± sd over runs)", title=f"{label} by model")
    diff = table[f"{metric}_diff"].to_numpy(float)
    err = np.vstack([diff - table[f"{metric}_ci_low"], table[f"{metric}_ci_high"] - diff])
    right.axvline(0, color="0.6", lw=1, ls="--")
    right.errorbar(diff, y, xerr=np.nan_to_num(err), fmt="s", color="C1", capsize=3)
    right.set(xlabel=f"{label} difference to RF (95% paired bootstrap CI)",
              title="Difference to the random forest")
    return fig
