"""Paired bootstrap of metric differences between a model and the random forest.

Samples are resampled with replacement within each paired run (one fold, one seed), the metric is
recomputed for both models on the same resample, and the per-run differences are averaged across
runs for each replicate; the 2.5 and 97.5 percentiles give the 95% interval (Efron & Tibshirani,
*An Introduction to the Bootstrap*, 1993, ch. 13). Metrics are vectorised over replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from aam.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS


@dataclass
class PairedRun:
    """One model run and the RF run of the same fold on their common samples.

    ``model`` and ``rf`` are predictions [N] for regression or probabilities [N, K] for
    classification; ``actual`` is float [N] or class index int [N] (columns of the probabilities).
    """

    actual: np.ndarray
    model: np.ndarray
    rf: np.ndarray


BETTER, WORSE, UNCLEAR = "better", "worse", "no clear difference"


def interval_verdict(low, high) -> str:
    """Verdict words from a 95% interval of a difference alone: ``better`` when it is above 0,
    ``worse`` below 0, ``no clear difference`` when it includes 0 or is missing."""
    if low is not None and not np.isnan(low) and low > 0:
        return BETTER
    if high is not None and not np.isnan(high) and high < 0:
        return WORSE
    return UNCLEAR


def regression_replicates(actual: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """R², MAE and RMSE of each bootstrap replicate.

    Parameters
    ----------
    actual, predicted : float ndarray [B, N]
        One resample a row.

    Returns
    -------
    dict of float ndarray [B]
        NaN R² where a resample's actual values are constant.
    """
    error = predicted - actual
    ss_tot = np.sum((actual - actual.mean(axis=1, keepdims=True)) ** 2, axis=1)
    ss_res = np.sum(error ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)
    return {"r2": r2, "mae": np.mean(np.abs(error), axis=1),
            "rmse": np.sqrt(np.mean(error ** 2, axis=1))}


def _binary_auc(truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    # Mann-Whitney U with average ranks for ties: [B, N] -> [B]
    ranks = rankdata(score, axis=1)
    n_pos = truth.sum(axis=1)
    n_neg = truth.shape[1] - n_pos
    u = np.sum(ranks * truth, axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def classification_replicates(actual: np.ndarray, proba: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, macro F1 and ROC AUC of each bootstrap replicate.

    Parameters
    ----------
    actual : int ndarray [B, N]
        Class index of each resampled sample.
    proba : float ndarray [B, N, K]

    Returns
    -------
    dict of float ndarray [B]
        As :func:`aam.metrics.classification_metrics`: balanced accuracy averages recall over
        classes present in the resample, macro F1 over classes present or predicted, AUC is
        binary (class 1 positive) or the mean one-vs-rest AUC of present classes.
    """
    n_classes = proba.shape[2]
    predicted = np.argmax(proba, axis=2)
    recalls, f1s, aucs = [], [], []
    for k in range(n_classes):
        truth, guess = actual == k, predicted == k
        tp, n_true, n_guess = (np.sum(truth & guess, axis=1), truth.sum(axis=1),
                               guess.sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            recalls.append(np.where(n_true > 0, tp / n_true, np.nan))
            f1 = np.where(n_true + n_guess > 0, 2 * tp / (n_true + n_guess), np.nan)
        f1s.append(f1)
        aucs.append(_binary_auc(truth, proba[:, :, k]))
    auc = aucs[1] if n_classes == 2 else _nanmean(np.vstack(aucs))
    return {"accuracy": np.mean(predicted == actual, axis=1),
            "balanced_accuracy": _nanmean(np.vstack(recalls)),
            "f1_macro": _nanmean(np.vstack(f1s)), "auc": auc}


def _nanmean(values: np.ndarray) -> np.ndarray:
    # mean over axis 0 ignoring NaN; all-NaN columns give NaN without a warning
    count = np.sum(~np.isnan(values), axis=0)
    total = np.nansum(values, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _replicates(task: str, actual, scores) -> dict[str, np.ndarray]:
    if task == "regression":
        return regression_replicates(actual, scores)
    return classification_replicates(actual, scores)


def paired_bootstrap(pairs: list[PairedRun], task: str, n_bootstrap: int = 2000,
                     seed: int | list[int] = 0) -> dict[str, dict[str, float | None]]:
    """Difference (model - RF) of every metric with a paired bootstrap 95% interval.

    Parameters
    ----------
    pairs : list of PairedRun
        One entry per model run, each with its own samples; resampled independently.
    task : {"regression", "classification"}
    n_bootstrap : int
        Replicates; each averages the per-run differences.
    seed : int or list of int
        Seed of the resampling (``numpy.random.default_rng``); the same inputs and seed give
        the same intervals.

    Returns
    -------
    dict
        ``{metric: {"diff", "ci_low", "ci_high"}}``; ``diff`` is the mean over runs of the
        difference on all samples; ``None`` where the metric is undefined.
    """
    names = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    rng = np.random.default_rng(seed)
    point = {m: [] for m in names}
    boot = {m: [] for m in names}
    for pair in pairs:
        n = pair.actual.shape[0]
        full = np.arange(n)[None, :]
        idx = np.vstack([full, rng.integers(0, n, size=(n_bootstrap, n))])  # row 0: no resample
        model = _replicates(task, pair.actual[idx], pair.model[idx])
        rf = _replicates(task, pair.actual[idx], pair.rf[idx])
        for m in names:
            diff = model[m] - rf[m]
            point[m].append(diff[0])
            boot[m].append(diff[1:])
    out = {}
    for m in names:
        replicate = _nanmean(np.vstack(boot[m]))
        replicate = replicate[~np.isnan(replicate)]
        diff = _nanmean(np.asarray(point[m])[:, None])[0]
        low, high = (np.percentile(replicate, [2.5, 97.5]) if replicate.size
                     else (np.nan, np.nan))
        out[m] = {k: (None if np.isnan(v) else float(v))
                  for k, v in (("diff", diff), ("ci_low", low), ("ci_high", high))}
    return out


def subject_bootstrap(task: str, actual: np.ndarray, model: np.ndarray, rf: np.ndarray,
                      groups: np.ndarray, n_bootstrap: int = 2000, seed: int = 0
                      ) -> dict[str, dict[str, float | None]]:
    """Model and RF metrics with a paired bootstrap 95% interval of their difference that
    resamples groups (subjects), not samples, since samples of one subject are correlated.

    Parameters
    ----------
    task : {"regression", "classification"}
    actual : ndarray [N]
        Values (regression) or class indices (classification) of every sample.
    model, rf : ndarray [R, N] or [R, N, K]
        Out-of-fold predictions (or class probabilities) of R paired runs (e.g. seeds) of each
        model on the same N samples; run r of the model is paired with run r of the forest.
    groups : ndarray [N]
        Subject of each sample; a replicate draws as many subjects as there are, with
        replacement, and takes all of their samples.
    n_bootstrap : int
    seed : int

    Returns
    -------
    dict
        ``{metric: {"model", "rf", "diff", "ci_low", "ci_high"}}``: the mean over runs of each
        model's metric on all samples, their difference, and the 2.5 / 97.5 percentiles of the
        replicates' mean-over-runs difference; ``None`` where undefined.
    """
    names = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    subjects, subject_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(subject_of == g) for g in range(len(subjects))]
    rng = np.random.default_rng(seed)
    draws = [np.arange(len(actual))] + [
        np.concatenate([members[g] for g in rng.integers(0, len(subjects), len(subjects))])
        for _ in range(n_bootstrap)]
    diffs = {m: np.full(len(draws), np.nan) for m in names}
    point = {}
    for b, idx in enumerate(draws):
        truth = np.broadcast_to(actual[idx], (model.shape[0],) + idx.shape)
        ours = _replicates(task, truth, model[:, idx])
        theirs = _replicates(task, truth, rf[:, idx])
        for m in names:
            diffs[m][b] = _nanmean((ours[m] - theirs[m])[:, None])[0]
            if b == 0:
                point[m] = (_nanmean(ours[m][:, None])[0], _nanmean(theirs[m][:, None])[0])
    out = {}
    for m in names:
        replicate = diffs[m][1:][~np.isnan(diffs[m][1:])]
        low, high = (np.percentile(replicate, [2.5, 97.5]) if replicate.size
                     else (np.nan, np.nan))
        values = {"model": point[m][0], "rf": point[m][1], "diff": diffs[m][0],
                  "ci_low": low, "ci_high": high}
        out[m] = {k: (None if np.isnan(v) else float(v)) for k, v in values.items()}
    return out
