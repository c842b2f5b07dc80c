"""The metadata permutation check of `aam predict --permutation-check`: shuffling a categorical
column moves a model that uses it and leaves an inert one in place; permutation.json."""

import json

import numpy as np
import pandas as pd
import pytest

from aam.cli.predict import main as predict_main
from aam.permutation import PermutationConfig, permutation_summary, shuffled_metadata
from aam.predictions import Predictions
from finetune_fixtures import lazy_trainer, prepare_both_tasks

IDS = [f"S{i}" for i in range(12)]
META = pd.DataFrame({"site": ["a", "b", "c"] * 4, "other": list("xy") * 6},
                    index=IDS)
EFFECT = {"a": -1.0, "b": 0.0, "c": 1.0}
BASE = np.arange(12, dtype=float)
ACTUAL = BASE + 3 * META["site"].map(EFFECT).to_numpy()  # the site shifts the target


def fake_predict(weight: float):
    """A model predicting the sample's base value plus ``weight`` times its site's effect."""

    def predict(meta):
        values = BASE + weight * meta.loc[IDS, "site"].map(EFFECT).to_numpy()
        return Predictions(IDS, values, ACTUAL, 1)

    return predict


def test_shuffled_metadata_permutes_only_the_listed_samples_and_columns():
    meta = pd.concat([META, pd.DataFrame({"site": ["q"], "other": ["z"]}, index=["OUT"])])
    order = np.roll(np.arange(12), 1)
    out = shuffled_metadata(meta, ["site"], IDS, order)
    assert out.loc[IDS, "site"].tolist() == meta.loc[IDS, "site"].to_numpy()[order].tolist()
    assert out.loc["OUT", "site"] == "q" and out["other"].equals(meta["other"])


def test_a_model_that_ignores_its_metadata_is_inert():
    summary = permutation_summary(fake_predict(0.0), ["site", "other"], IDS, "regression", META,
                                  PermutationConfig())
    assert summary["inert"] is True
    assert set(summary["columns"]) == {"site", "other", "all"}
    assert summary["columns"]["all"] == {"metric_change": 0.0, "prediction_change": 0.0}


def test_a_model_that_uses_its_metadata_moves_and_loses_accuracy():
    summary = permutation_summary(fake_predict(3.0), ["site"], IDS, "regression", META,
                                  PermutationConfig(repeats=4, seed=1))
    site = summary["columns"]["site"]
    assert summary["inert"] is False and site["prediction_change"] > 0.1
    assert site["metric_change"] < 0  # the shuffled site no longer matches the sample
    again = permutation_summary(fake_predict(3.0), ["site"], IDS, "regression", META,
                                PermutationConfig(repeats=4, seed=1))
    assert again == summary  # seeded


def test_no_categorical_columns_gives_a_note():
    summary = permutation_summary(None, [], IDS, "regression", META, PermutationConfig())
    assert summary["inert"] is None and summary["columns"] == {} and "note" in summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = prepare_both_tasks(tmp_path_factory.mktemp("permutation"))
    return lazy_trainer(root, {
        "regression": ("regression", {"fusion": "concat", "columns": ("category", "batch")}),
        "classification": ("classification", {"columns": ("batch",),
                                              "task": "classification"})})


@pytest.mark.parametrize("name", ["regression", "classification"])
def test_predict_writes_permutation_json_beside_the_predictions(trained, tmp_path, name):
    prepared, run = trained(name)
    out = tmp_path / "out" / "predictions.tsv"
    assert predict_main(["--model", str(run / "model.pt"), "--data-dir", str(prepared),
                         "--output", str(out), "--device", "cpu", "--permutation-check",
                         "--permutation-repeats", "2"]) == 0
    summary = json.loads((out.parent / "permutation.json").read_text())
    columns = ["category", "batch", "all"] if name == "regression" else ["batch"]
    assert list(summary["columns"]) == columns
    assert summary["repeats"] == 2 and isinstance(summary["inert"], bool)
    assert summary["metric"] == {"regression": "r2", "classification": "balanced_accuracy"}[name]
    for values in summary["columns"].values():
        assert values["prediction_change"] >= 0
    assert out.is_file() and (out.parent / "metrics.json").is_file()
