"""Metrics against scikit-learn and hand-worked cases."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from aam.metrics import classification_metrics, regression_metrics, roc_auc


def test_regression_metrics_match_hand_values():
    out = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    # errors 0,0,0,2: MAE 0.5, RMSE sqrt(4/4) = 1; SS_res 4, SS_tot 5 -> R2 = 0.2
    assert out == pytest.approx({"r2": 0.2, "mae": 0.5, "rmse": 1.0})
    assert all(type(v) is float for v in out.values())


def test_regression_metrics_match_sklearn_on_random_values():
    rng = np.random.default_rng(1)
    actual, predicted = rng.normal(size=30), rng.normal(size=30)
    out = regression_metrics(actual, predicted)
    assert out["r2"] == pytest.approx(skm.r2_score(actual, predicted))
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(actual, predicted))
    assert out["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(actual, predicted)))


def test_r2_is_none_when_actual_is_constant():
    out = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert out["r2"] is None and out["mae"] == pytest.approx(2 / 3)


def test_binary_classification_metrics_match_sklearn():
    actual = ["a", "b", "b", "a", "b", "a"]
    p_b = np.array([0.2, 0.9, 0.4, 0.6, 0.7, 0.1])
    proba = np.column_stack([1 - p_b, p_b])
    out = classification_metrics(actual, proba, ["a", "b"])
    predicted = np.where(p_b > 0.5, "b", "a")  # a b a b b a -> 4 of 6 right
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(actual, predicted))
    assert out["f1_macro"] == pytest.approx(skm.f1_score(actual, predicted, average="macro"))
    assert out["auc"] == pytest.approx(skm.roc_auc_score(np.array(actual) == "b", p_b))


def test_multiclass_auc_is_macro_one_vs_rest():
    rng = np.random.default_rng(0)
    actual = np.array(["x", "y", "z"] * 5)
    proba = rng.dirichlet(np.ones(3), size=15)
    expected = skm.roc_auc_score(actual, proba, multi_class="ovr", average="macro")
    assert classification_metrics(actual, proba, ["x", "y", "z"])["auc"] == pytest.approx(expected)


def test_auc_is_none_when_only_one_class_is_present():
    proba = np.array([[0.8, 0.2], [0.3, 0.7]])
    out = classification_metrics(["a", "a"], proba, ["a", "b"])
    assert out["auc"] is None
    assert out["accuracy"] == pytest.approx(0.5)


def test_multiclass_auc_skips_an_absent_class():
    actual = ["x", "y", "x", "y"]
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    # x vs rest and y vs rest are both perfectly ranked; z has no positives and is left out
    assert roc_auc(actual, proba, ["x", "y", "z"]) == pytest.approx(1.0)


def test_numeric_class_labels_compare_as_strings():
    out = classification_metrics([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
                                 ["0", "1"])
    assert out["accuracy"] == pytest.approx(2 / 3)
