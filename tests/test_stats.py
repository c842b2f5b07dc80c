"""Paired bootstrap: vectorised metrics agree with aam.metrics; intervals cover known effects."""

import math

import numpy as np
import pytest

from aam.metrics import classification_metrics, regression_metrics
from aam.reports.stats import (PairedRun, classification_replicates, paired_bootstrap,
                               regression_replicates)


def test_vectorised_regression_metrics_equal_the_reported_ones():
    rng = np.random.default_rng(3)
    actual, predicted = rng.normal(size=(2, 25))
    one = {k: v[0] for k, v in regression_replicates(actual[None], predicted[None]).items()}
    assert one == pytest.approx(regression_metrics(actual, predicted))


def test_vectorised_classification_metrics_equal_the_reported_ones():
    rng = np.random.default_rng(4)
    actual = rng.integers(0, 3, size=30)
    actual[:3] = [0, 1, 2]
    proba = rng.dirichlet(np.ones(3), size=30)
    one = {k: v[0] for k, v in classification_replicates(actual[None], proba[None]).items()}
    expected = classification_metrics(np.array(["a", "b", "c"])[actual], proba, ["a", "b", "c"])
    assert one == pytest.approx(expected)


def noisy_pairs(n_runs=5, n=200, sd_truth=3.0):
    rng = np.random.default_rng(11)
    pairs = []
    for _ in range(n_runs):
        truth = rng.normal(0, sd_truth, n)
        pairs.append(PairedRun(truth, truth + rng.normal(0, 1, n), truth + rng.normal(0, 2, n)))
    return pairs


def test_bootstrap_interval_covers_the_analytic_difference_and_excludes_zero():
    out = paired_bootstrap(noisy_pairs(), "regression", n_bootstrap=500, seed=0)
    # E|N(0, s)| = s * sqrt(2/pi): MAE difference = (1 - 2) * sqrt(2/pi)
    mae = out["mae"]
    assert mae["ci_low"] < -math.sqrt(2 / math.pi) < mae["ci_high"] < 0
    # R2 = 1 - noise_var / truth_var: difference = (4 - 1) / 9
    r2 = out["r2"]
    assert 0 < r2["ci_low"] < 1 / 3 < r2["ci_high"]
    assert r2["ci_low"] < r2["diff"] < r2["ci_high"]


def test_bootstrap_of_identical_models_is_zero_and_seeded():
    pairs = [PairedRun(p.actual, p.model, p.model) for p in noisy_pairs(n_runs=2, n=50)]
    out = paired_bootstrap(pairs, "regression", n_bootstrap=100, seed=5)
    assert out["mae"] == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    again = paired_bootstrap(noisy_pairs(n_runs=2, n=50), "regression", n_bootstrap=100, seed=5)
    assert again == paired_bootstrap(noisy_pairs(n_runs=2, n=50), "regression", 100, seed=5)


def test_classification_bootstrap_prefers_the_sharper_model():
    rng = np.random.default_rng(2)
    actual = rng.integers(0, 2, size=150)
    good = np.clip(0.8 * actual + 0.1 + rng.normal(0, 0.15, 150), 0, 1)
    poor = np.clip(0.2 * actual + 0.4 + rng.normal(0, 0.3, 150), 0, 1)
    pair = PairedRun(actual, np.column_stack([1 - good, good]), np.column_stack([1 - poor, poor]))
    out = paired_bootstrap([pair], "classification", n_bootstrap=300, seed=0)
    assert out["auc"]["ci_low"] > 0 and out["accuracy"]["ci_low"] > 0
