"""The ``predictions.tsv`` and ``metrics.json`` file contracts, and multi-pass aggregation.

``predictions.tsv`` columns: ``sample_id``, ``prediction``, ``actual`` (original scale; empty
when unknown), ``std`` and ``n_passes`` when several passes were aggregated, and for
classification one ``prob_<class>`` column per class (``prediction`` is then the class label).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from aam.atomic import atomic_path, write_json
from aam.errors import InputError
from aam.metrics import classification_metrics, regression_metrics
from aam.qiime2_metadata import id_problem, qiime2_path, write_qiime2_metadata

log = logging.getLogger(__name__)

PROB_PREFIX = "prob_"


@dataclass
class Predictions:
    """Original-scale predictions, one row per sample (input order).

    ``prediction`` [N] (values or class labels), ``actual`` [N] (NaN when unknown), ``std`` [N]
    across passes (None for one pass), ``proba`` [N, K] mean class probabilities.
    """

    sample_ids: list[str]
    prediction: np.ndarray
    actual: np.ndarray
    n_passes: int
    std: Optional[np.ndarray] = None
    proba: Optional[np.ndarray] = None
    classes: Optional[list[str]] = None

    def metrics(self) -> Optional[dict]:
        """``{"task", "n", <metrics>}`` over samples with a known actual; None if none has one.

        The one metrics function of validation (``aam train``) and test predictions
        (``aam predict``)."""
        known = ~pd.isna(self.actual)
        if not known.any():
            return None
        if self.classes:
            values = classification_metrics(self.actual[known], self.proba[known], self.classes)
            task = "classification"
        else:
            values = regression_metrics(self.actual[known].astype(np.float64),
                                        self.prediction[known])
            task = "regression"
        return {"task": task, "n": int(known.sum()), **values}

    def metric_values(self) -> dict:
        """The metrics alone (no task and count); empty when no actual is known."""
        out = dict(self.metrics() or {})
        out.pop("task", None), out.pop("n", None)
        return out


def aggregate_passes(pred_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation over prediction passes.

    Parameters
    ----------
    pred_matrix : array-like of float [P, N] or [P, N, K]
        One row per pass (e.g. different random ASV draws); [P, N, K] for class probabilities.

    Returns
    -------
    mean : ndarray [N] or [N, K]
    std : ndarray [N] or [N, K]
        ``ddof=0``, so a single pass gives 0.
    """
    values = np.asarray(pred_matrix, dtype=np.float64)
    if values.ndim < 2 or values.shape[0] == 0:
        raise ValueError(f"pred_matrix must be [P, N] with P >= 1, got shape {values.shape}")
    return values.mean(axis=0), values.std(axis=0, ddof=0)


def from_passes(sample_ids: list[str], values, actual, classes=None) -> Predictions:
    """One :class:`Predictions` from per-pass outputs, for validation and test predictions alike.

    Parameters
    ----------
    values : array [P, N] (regression, original scale) or [P, N, K] (class probabilities)
    actual : array [N]
    classes : list of str, optional
        Class names (classification): the label is the argmax of the mean probability and
        ``std`` the spread of that class's probability across passes.
    """
    values = np.asarray(values, dtype=np.float64)
    passes = values.shape[0]
    mean, spread = aggregate_passes(values)
    if classes is None:
        return Predictions(list(sample_ids), mean, actual, passes,
                           spread if passes > 1 else None)
    best = mean.argmax(axis=1)
    std = spread[np.arange(len(best)), best] if passes > 1 else None
    return Predictions(list(sample_ids), np.asarray(classes)[best], actual, passes, std, mean,
                       list(classes))


def write_predictions(path: str | os.PathLike, sample_ids, prediction, actual=None, std=None,
                      n_passes=None, proba=None, classes=None) -> None:
    """Write ``predictions.tsv`` atomically.

    Parameters
    ----------
    path : str or PathLike
    sample_ids : sequence of str [N]
    prediction : array-like [N]
        Values on the original target scale, or class labels.
    actual : array-like [N], optional
        True values/labels; written as empty cells when omitted.
    std : array-like of float [N], optional
        Spread across passes; written with ``n_passes``.
    n_passes : int, optional
    proba : array-like of float [N, K], optional
        Class probabilities, columns in ``classes`` order (classification only).
    classes : sequence of K labels, optional
    """
    n = len(sample_ids)
    frame = pd.DataFrame({"sample_id": [str(s) for s in sample_ids],
                          "prediction": np.asarray(prediction)})
    frame["actual"] = np.asarray(actual) if actual is not None else [""] * n
    if std is not None:
        frame["std"] = np.asarray(std, dtype=np.float64)
        frame["n_passes"] = int(n_passes) if n_passes is not None else 1
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        if classes is None or proba.shape != (n, len(classes)):
            raise ValueError(f"proba {proba.shape} needs classes of length {proba.shape[-1]}")
        for k, cls in enumerate(classes):
            frame[f"{PROB_PREFIX}{cls}"] = proba[:, k]
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
    problem = id_problem(frame["sample_id"])
    if problem:
        log.warning("no %s written: %s", qiime2_path(path).name, problem)
    else:
        write_qiime2_metadata(frame, qiime2_path(path))  # the same rows, readable by QIIME 2


def prediction_classes(frame: pd.DataFrame) -> list[str]:
    """Class labels from the ``prob_<class>`` columns (empty for regression)."""
    return [c[len(PROB_PREFIX):] for c in frame.columns if c.startswith(PROB_PREFIX)]


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``predictions.tsv``: ``sample_id`` as str, numeric columns as float.

    For classification files (``prob_`` columns present) ``prediction`` and ``actual`` stay
    strings. Empty ``actual`` cells become NaN.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    InputError
        When ``sample_id`` or ``prediction`` is missing or a numeric column has text.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in ("sample_id", "prediction") if c not in frame.columns]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)}; a predictions.tsv needs "
                         "sample_id, prediction, actual. Rewrite it with aam predict/rf-baseline.")
    if "actual" not in frame.columns:
        frame["actual"] = ""
    is_classifier = bool(prediction_classes(frame))
    numeric = [c for c in frame.columns if c.startswith(PROB_PREFIX) or c in ("std", "n_passes")]
    numeric += [] if is_classifier else ["prediction", "actual"]
    for column in numeric:
        frame[column] = _to_float(frame[column], column, path, frame["sample_id"])
    if is_classifier:
        frame["actual"] = frame["actual"].replace("", np.nan)
    return frame


def _to_float(values: pd.Series, column: str, path: Path, sample_ids: pd.Series) -> pd.Series:
    parsed = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    bad = parsed.isna() & values.ne("")
    if bad.any():
        shown = ", ".join(f"{s}={v!r}" for s, v in zip(sample_ids[bad][:5], values[bad][:5]))
        raise InputError(f"column {column!r} of {path} has {int(bad.sum())} non-numeric "
                         f"value(s) ({shown}). Regenerate the predictions file.")
    return parsed.astype(np.float64)


def prediction_task(frame: pd.DataFrame) -> str:
    """``"classification"`` when the frame has ``prob_`` columns, else ``"regression"``."""
    return "classification" if prediction_classes(frame) else "regression"


def metrics_from_predictions(frame: pd.DataFrame) -> dict:
    """``{"task", "n", <metrics>}`` computed from the rows of ``frame`` that have an actual.

    Raises
    ------
    InputError
        When no row has an actual value.
    """
    known = frame[frame["actual"].notna()]
    if known.empty:
        raise InputError(f"none of the {len(frame)} predictions has an actual value, so no "
                         "metrics can be computed. Predict samples whose target is known.")
    task = prediction_task(frame)
    if task == "classification":
        classes = prediction_classes(frame)
        proba = known[[f"{PROB_PREFIX}{c}" for c in classes]].to_numpy()
        values = classification_metrics(known["actual"].to_numpy(), proba, classes)
    else:
        values = regression_metrics(known["actual"].to_numpy(), known["prediction"].to_numpy())
    return {"task": task, "n": int(len(known)), **values}


def write_metrics(path: str | os.PathLike, metrics: dict) -> None:
    """Write ``metrics.json`` atomically; NaN/inf floats become ``null``."""
    write_json(path, _json_safe(metrics))


def read_metrics(path: str | os.PathLike) -> dict:
    """Read ``metrics.json``; FileNotFoundError / InputError (one line) on a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}). "
                         "Rerun the step that wrote it.") from err
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
