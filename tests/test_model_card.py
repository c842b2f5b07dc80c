"""model-card.md beside every model.pt: data, target, transform, settings, validation metrics with
bootstrap intervals, version and commit, and how the checkpoint was selected."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

import aam
from aam.model_card import bootstrap_intervals
from aam.training.finetune import FinetunePaths, run_finetune
from finetune_fixtures import make_prepared, tiny_finetune_cfg


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_every_trained_model_gets_a_card(tmp_path, task):
    prepared = make_prepared(tmp_path, task=task)
    kw = {"columns": ("batch",), "task": "classification"} if task == "classification" else {}
    out = tmp_path / "run"
    torch.manual_seed(0)
    metrics = run_finetune(tiny_finetune_cfg(epochs=2, target_transform="zscore"
                                             if task == "regression" else "none", **kw),
                           FinetunePaths(prepared, out))
    card = (out / "model-card.md").read_text()
    assert (out / "model.pt").is_file()
    target = "target" if task == "regression" else "category"
    assert card.startswith(f"# Model card: {target} ({task})")
    for heading in ("## Data", "## Validation metrics", "## How it was selected", "## Settings",
                    "## Software"):
        assert heading in card
    info = json.loads((prepared / "prepare.json").read_text())
    assert f"{info['n_samples']} samples x {info['n_asvs']} ASVs" in card
    if task == "regression":
        assert "target transform: `zscore`" in card
    assert f"epoch {metrics['best_epoch']} of {metrics['epochs_run']}" in card
    assert "abundance head: fourier features, width 512" in card
    fit = metrics["abundance_head_fit"]
    assert (f"Epoch 0 is the fitted start: the abundance head's last layer fitted in closed form "
            f"on the {fit['n_train']} training samples, its L2 penalty {fit['penalty']:.3g} "
            f"chosen by validation samples.") in card
    assert f"aam {aam.__version__}, commit " in card
    assert re.search(r"commit ([0-9a-f]{40}|unknown)", card)
    primary = "r2" if task == "regression" else "balanced_accuracy"
    row = next(line for line in card.splitlines() if line.startswith(f"| {primary} |"))
    assert f"{metrics[primary]:.4g}" in row and re.search(r"\[-?[\d.]+, -?[\d.]+\]", row)


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)

    def frame(n):
        actual = rng.normal(size=n)
        return pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)],
                             "prediction": actual + rng.normal(0, 0.5, n), "actual": actual})

    small, large = bootstrap_intervals(frame(30), "regression"), bootstrap_intervals(
        frame(600), "regression")
    assert small["mae"][0] < 0.4 < small["mae"][1]  # E|N(0, 0.5)| = 0.399
    assert large["mae"][1] - large["mae"][0] < small["mae"][1] - small["mae"][0]
