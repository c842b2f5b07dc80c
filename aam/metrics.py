"""Evaluation metrics shared by AAM, the random-forest baseline and the comparison report.

Every function returns plain Python floats (JSON-ready); a metric that is undefined for the given
samples (e.g. ROC AUC when only one class is present) is ``None``, never NaN.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn import metrics as skm

REGRESSION_METRICS = ("r2", "mae", "rmse")
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "auc")
# Metrics where a larger value is better; the rest (mae, rmse) are errors.
HIGHER_IS_BETTER = {"r2": True, "mae": False, "rmse": False, "accuracy": True,
                    "balanced_accuracy": True, "f1_macro": True, "auc": True}


def _plain(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def regression_metrics(actual, predicted) -> dict[str, float | None]:
    """R², mean absolute error and root mean squared error on the original target scale.

    Parameters
    ----------
    actual : array-like of float [N]
        True target values.
    predicted : array-like of float [N]
        Predicted values, same order.

    Returns
    -------
    dict
        ``{"r2", "mae", "rmse"}`` as floats; ``r2`` is ``None`` when fewer than 2 samples or the
        actual values are constant (R² is undefined there).
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.shape != predicted.shape or actual.ndim != 1:
        raise ValueError(f"actual {actual.shape} and predicted {predicted.shape} must be equal 1-D")
    if actual.size == 0:
        return {"r2": None, "mae": None, "rmse": None}
    error = predicted - actual
    r2 = None
    if actual.size >= 2 and np.ptp(actual) > 0:
        r2 = _plain(skm.r2_score(actual, predicted))
    return {"r2": r2, "mae": _plain(np.mean(np.abs(error))),
            "rmse": _plain(np.sqrt(np.mean(error ** 2)))}


def roc_auc(actual_labels, proba, classes) -> float | None:
    """Binary ROC AUC (positive class = ``classes[1]``) or macro one-vs-rest AUC.

    Parameters
    ----------
    actual_labels : array-like [N]
        True class labels (compared as strings with ``classes``).
    proba : array-like of float [N, K]
        Predicted probability of each class, columns in ``classes`` order.
    classes : sequence of K labels

    Returns
    -------
    float or None
        For K > 2 the mean of one-vs-rest AUCs over the classes present in ``actual_labels``
        (an absent class has no positives, so its AUC is undefined and left out);
        ``None`` when fewer than two classes are present.
    """
    actual = np.asarray([str(a) for a in actual_labels])
    proba = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    present = [k for k, c in enumerate(classes) if np.any(actual == c)]
    if len(present) < 2:
        return None
    if len(classes) == 2:
        return _plain(skm.roc_auc_score(actual == classes[1], proba[:, 1]))
    aucs = [skm.roc_auc_score(actual == classes[k], proba[:, k]) for k in present]
    return _plain(np.mean(aucs))


def classification_metrics(actual_labels, proba, classes) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro F1 and ROC AUC of class probabilities.

    Parameters
    ----------
    actual_labels : array-like [N]
        True class labels; compared as strings with ``classes``.
    proba : array-like of float [N, K]
        Predicted probabilities, one column per class in ``classes`` order; the predicted label
        is the arg-max column.
    classes : sequence of K labels

    Returns
    -------
    dict
        ``{"accuracy", "balanced_accuracy", "f1_macro", "auc"}``; ``auc`` as in :func:`roc_auc`.
        Macro F1 averages over classes seen in actual or predicted labels.
    """
    actual = np.asarray([str(a) for a in actual_labels])
    proba = np.asarray(proba, dtype=np.float64)
    classes_arr = np.asarray([str(c) for c in classes])
    if proba.ndim != 2 or proba.shape != (actual.size, classes_arr.size):
        raise ValueError(f"proba must be [N={actual.size}, K={classes_arr.size}], "
                         f"got {proba.shape}")
    if actual.size == 0:
        return dict.fromkeys(CLASSIFICATION_METRICS)
    predicted = classes_arr[np.argmax(proba, axis=1)]
    with warnings.catch_warnings():
        # classes predicted but absent from the truth are expected in small folds
        warnings.simplefilter("ignore", UserWarning)
        balanced = skm.balanced_accuracy_score(actual, predicted)
        f1 = skm.f1_score(actual, predicted, average="macro", zero_division=0)
    return {"accuracy": _plain(skm.accuracy_score(actual, predicted)),
            "balanced_accuracy": _plain(balanced), "f1_macro": _plain(f1),
            "auc": roc_auc(actual, proba, classes_arr)}


def metric_names(task: str) -> tuple[str, ...]:
    """The metric keys reported for ``task`` ("regression" or "classification")."""
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
