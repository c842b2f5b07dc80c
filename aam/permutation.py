"""Does a model use its categorical metadata? Shuffle each categorical column across the
evaluated samples (seeded), predict again, and measure how much the metric and the predictions
move (``aam predict --permutation-check`` writes the result as ``permutation.json``).

A model whose predictions do not move when its metadata is shuffled (below ``INERT_THRESHOLD``:
target standard deviations for regression, probability for classification) is *metadata
inert*: whatever its fusion, it is the sequence-only model, and the report does not rank it
against other fusions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from aam.atomic import write_json
from aam.errors import InputError
from aam.settings import setting

log = logging.getLogger(__name__)

PERMUTATION_FILE = "permutation.json"
INERT_THRESHOLD = 0.01  # mean |prediction change| below this: the metadata changes nothing
PRIMARY = {"regression": "r2", "classification": "balanced_accuracy"}


@dataclass(frozen=True)
class PermutationConfig:
    """How many shuffles per column and their seed (``aam predict --permutation-*``)."""

    repeats: int = setting(3, "shuffles per column, averaged")
    seed: int = setting(0, "seed of the shuffles")
    threshold: float = setting(INERT_THRESHOLD, "mean |prediction change| below which the "
                               "metadata is called inert", unit="target SD or probability")

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise InputError(f"--permutation-repeats must be >= 1, got {self.repeats}.")


def shuffled_metadata(meta: pd.DataFrame, columns: Sequence[str], ids: Sequence[str],
                      order: np.ndarray) -> pd.DataFrame:
    """A copy of ``meta`` whose ``columns`` hold, for the samples ``ids``, the values of the
    samples ``ids[order]`` (one permutation for all the columns; other rows unchanged)."""
    rows = pd.Index(meta.index.astype(str)).get_indexer(list(ids))
    out = meta.copy()
    for column in columns:
        values = out[column].to_numpy(copy=True)
        values[rows] = values[rows[order]]
        out[column] = values
    return out


def prediction_change(task: str, base, other, scale: float) -> float:
    """Mean absolute change of the predictions: in ``scale`` units (the target's sd) for
    regression; the mean total-variation distance of the class probabilities otherwise."""
    if task == "classification":
        return float(0.5 * np.abs(other.proba - base.proba).sum(axis=1).mean())
    return float(np.mean(np.abs(np.asarray(other.prediction, float)
                                - np.asarray(base.prediction, float))) / scale)


def target_scale(base) -> float:
    """The sd of the known actual values (of the predictions when none is known), never 0."""
    actual = pd.to_numeric(pd.Series(base.actual), errors="coerce").to_numpy(float)
    actual = actual[np.isfinite(actual)]
    values = actual if actual.size > 1 else np.asarray(base.prediction, float)
    sd = float(np.std(values)) if values.size > 1 else 0.0
    return sd if sd > 0 else 1.0


def permutation_summary(predict, columns: Sequence[str], ids: Sequence[str], task: str,
                        meta: pd.DataFrame, cfg: PermutationConfig) -> dict:
    """The permutation check of one model.

    Parameters
    ----------
    predict : callable
        ``predict(metadata) -> Predictions`` of the samples ``ids`` with that metadata.
    columns : the model's categorical columns
    ids : the evaluated samples
    task : "regression" or "classification"
    meta : the metadata the model is evaluated with
    cfg : PermutationConfig

    Returns
    -------
    dict
        ``columns`` (per column, plus ``all`` for several columns shuffled together): the mean
        over repeats of ``metric_change`` (shuffled - original, the primary metric) and
        ``prediction_change``; ``inert`` is True when shuffling every column together moves the
        predictions by less than ``threshold``.
    """
    metric = PRIMARY[task]
    out = {"task": task, "metric": metric, "repeats": cfg.repeats, "seed": cfg.seed,
           "threshold": cfg.threshold, "n_samples": len(ids),
           "prediction_change_unit": ("probability (total variation)"
                                      if task == "classification" else "target sd"),
           "columns": {}, "inert": None}
    if not columns:
        out["note"] = "the model has no categorical columns"
        return out
    base = predict(meta)
    original = (base.metrics() or {}).get(metric)
    scale = target_scale(base) if task == "regression" else 1.0
    out.update({"metric_original": original, "target_sd": scale if task == "regression"
                else None})
    rng = np.random.default_rng(cfg.seed)
    groups = {c: [c] for c in columns}
    if len(columns) > 1:
        groups["all"] = list(columns)
    for name, shuffled in groups.items():
        metric_changes, pred_changes = [], []
        for _ in range(cfg.repeats):
            order = rng.permutation(len(ids))
            other = predict(shuffled_metadata(meta, shuffled, ids, order))
            value = (other.metrics() or {}).get(metric)
            if value is not None and original is not None:
                metric_changes.append(value - original)
            pred_changes.append(prediction_change(task, base, other, scale))
        out["columns"][name] = {
            "metric_change": float(np.mean(metric_changes)) if metric_changes else None,
            "prediction_change": float(np.mean(pred_changes))}
    joint = out["columns"]["all" if len(columns) > 1 else columns[0]]
    out["inert"] = bool(joint["prediction_change"] < cfg.threshold)
    log.info("permutation check: shuffling the metadata moves the predictions by %.4g %s and "
             "%s by %s%s", joint["prediction_change"], out["prediction_change_unit"], metric,
             "n/a" if joint["metric_change"] is None else f"{joint['metric_change']:+.4f}",
             " (metadata inert)" if out["inert"] else "")
    return out


def run_permutation_check(predict_cfg, paths, cfg: PermutationConfig,
                          output: Optional[Path] = None) -> dict:
    """Load the model and samples of ``aam predict``'s ``paths``, run the check and write
    ``permutation.json`` (default: beside ``paths.output``). Returns the summary."""
    from aam.inference import load_inputs, predict_samples

    got = load_inputs(paths)
    columns = list(got.model.cfg.data.categorical_columns)

    def predict(metadata):
        return predict_samples(got.model, got.payload, got.data, got.ids, predict_cfg,
                               metadata, got.source)

    summary = permutation_summary(predict, columns, got.ids, got.model.cfg.task, got.metadata,
                                  cfg)
    write_json(output or Path(paths.output).parent / PERMUTATION_FILE, summary)
    return summary
