"""aam predict: round trip against the validation predictions of aam train, multi-pass
aggregation, unseen categories, wrong checkpoints and bad sample lists."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aam.atomic import write_lines
from aam.cli.predict import main as predict_main
from aam.errors import InputError
from aam.inference import PredictConfig, PredictPaths, load_predictor, run_predict
from aam.models.fusion import FUSIONS
from aam.predictions import read_predictions
from aam.training.checkpoint import Checkpoint, save_checkpoint
from finetune_fixtures import lazy_trainer, prepare_both_tasks

# name -> (task, tiny_finetune_cfg keyword arguments)
RUNS = {f"fusion-{name}": ("regression", {"fusion": name}) for name in sorted(FUSIONS)}
RUNS.update({
    "classification": ("classification", {"columns": ("batch",), "task": "classification"}),
    "no-count-frozen-scaled": ("regression", {"count_prediction": False, "freeze_base": True,
                                              "columns": ("category", "batch"),
                                              "conditional_output_scaling": "batch"}),
    "zscore-category": ("regression", {"target_transform": "zscore-category",
                                       "normalize_by": ("category",)}),
})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """12 simulated samples x 16 ASVs, prepared for regression and classification."""
    return prepare_both_tasks(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def trained(root):
    """name -> (prepared dir, run dir); each configuration is trained once, on first use."""
    return lazy_trainer(root, RUNS)


def _predict(prepared: Path, run: Path, out: Path, *flags: str) -> pd.DataFrame:
    argv = ["--model", str(run / "model.pt"), "--data-dir", str(prepared), "--output", str(out),
            "--device", "cpu", *flags]
    assert predict_main(argv) == 0
    return read_predictions(out)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_predictions_equal_validation_predictions(name, trained, tmp_path):
    prepared, run = trained(name)
    got = _predict(prepared, run, tmp_path / "predictions.tsv", "--samples",
                   str(run / "val_samples.txt"))
    want = read_predictions(run / "val_predictions.tsv")
    assert list(got.columns) == list(want.columns)
    merged = want.merge(got, on="sample_id", suffixes=("_train", "_predict"))
    assert len(merged) == len(want) == len(got)
    for column in [c for c in want.columns if c.startswith("prob_")]:
        np.testing.assert_allclose(merged[f"{column}_train"], merged[f"{column}_predict"],
                                   rtol=1e-5, atol=1e-6)
    if RUNS[name][0] == "classification":
        assert (merged["prediction_train"] == merged["prediction_predict"]).all()
        assert (merged["actual_train"] == merged["actual_predict"]).all()
    else:  # original scale: the actual is the raw metadata value, never a normalised one
        np.testing.assert_allclose(merged["prediction_train"], merged["prediction_predict"],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(merged["actual_train"], merged["actual_predict"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["task"] == RUNS[name][0] and metrics["n"] == len(want)
    assert metrics["n_passes"] == 1 and metrics["model"] == str(run / "model.pt")


def test_every_weight_loads_strictly(trained):
    _, run = trained("no-count-frozen-scaled")
    model, payload = load_predictor(run / "model.pt")
    assert model.count_head is None and model.output_scaling is not None
    assert set(model.state_dict()) == set(payload.model_state)


def test_multi_pass_is_mean_and_std_of_single_passes(trained, tmp_path):
    prepared, run = trained("fusion-concat")
    several = _predict(prepared, run, tmp_path / "p3.tsv", "--asv-sampling", "random",
                       "--prediction-passes", "3", "--seed", "5")
    singles = [_predict(prepared, run, tmp_path / f"p{s}.tsv", "--asv-sampling", "random",
                        "--seed", str(s))["prediction"].to_numpy() for s in (5, 6, 7)]
    assert (several["n_passes"] == 3).all()
    np.testing.assert_allclose(several["prediction"], np.mean(singles, axis=0), rtol=1e-5)
    np.testing.assert_allclose(several["std"], np.std(singles, axis=0), rtol=1e-4, atol=1e-7)
    assert several["std"].max() > 0  # the draws differ, so the test compares real passes
    uncached = _predict(prepared, run, tmp_path / "nc.tsv", "--asv-sampling", "random",
                        "--prediction-passes", "3", "--seed", "5", "--no-asv-cache")
    np.testing.assert_allclose(uncached["prediction"], several["prediction"], rtol=1e-5)


def test_passes_without_random_sampling_warn_and_run_once(trained, tmp_path, caplog):
    prepared, run = trained("fusion-concat")
    paths = PredictPaths(run / "model.pt", prepared, tmp_path / "p.tsv")
    with caplog.at_level(logging.WARNING):
        metrics = run_predict(PredictConfig(4, asv_sampling="first", device="cpu"), paths)
    assert "single pass" in caplog.text and "--asv-sampling random" in caplog.text
    got = read_predictions(tmp_path / "p.tsv")
    assert "std" not in got.columns and len(got) == 12 and metrics["n_passes"] == 1


def test_unseen_category_is_named_and_treated_as_missing(trained, root, tmp_path, caplog):
    prepared, run = trained("fusion-gmu")
    meta = pd.read_csv(prepared / "metadata.tsv", sep="\t", dtype=str)
    first = meta["sample_id"].iloc[0]
    unseen, missing = meta.copy(), meta.copy()
    unseen.loc[0, "category"] = "site-never-seen"
    missing.loc[0, "category"] = ""
    unseen.to_csv(tmp_path / "unseen.tsv", sep="\t", index=False)
    missing.to_csv(tmp_path / "missing.tsv", sep="\t", index=False)
    paths = PredictPaths(run / "model.pt", prepared, tmp_path / "a.tsv",
                         metadata=tmp_path / "unseen.tsv")
    with caplog.at_level(logging.WARNING):
        run_predict(PredictConfig(device="cpu"), paths)
    assert "'category'" in caplog.text and "site-never-seen" in caplog.text
    a = read_predictions(tmp_path / "a.tsv")
    b = _predict(prepared, run, tmp_path / "b" / "b.tsv", "--metadata",
                 str(tmp_path / "missing.tsv"))  # beside a.tsv's metrics.json, not on it
    assert a.loc[a.sample_id == first, "prediction"].item() == pytest.approx(
        b.loc[b.sample_id == first, "prediction"].item(), rel=1e-6)


def test_unknown_target_gives_empty_actual_and_no_metrics(trained, tmp_path):
    prepared, run = trained("fusion-concat")
    meta = pd.read_csv(prepared / "metadata.tsv", sep="\t", dtype=str).drop(columns="target")
    meta.to_csv(tmp_path / "no-target.tsv", sep="\t", index=False)
    got = _predict(prepared, run, tmp_path / "p.tsv", "--metadata",
                   str(tmp_path / "no-target.tsv"))
    assert got["actual"].isna().all() and got["prediction"].notna().all()
    assert not (tmp_path / "metrics.json").exists()


def test_encoder_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "encoder.pt"
    save_checkpoint(path, Checkpoint("encoder", {}, {"w": torch.zeros(1)}))
    with pytest.raises(InputError, match="encoder checkpoint .*model.pt written by aam train"):
        load_predictor(path)
    assert predict_main(["--model", str(path), "--data-dir", str(tmp_path), "--output",
                         str(tmp_path / "p.tsv")]) == 2
    assert "is an encoder checkpoint" in capsys.readouterr().err


def test_samples_not_in_table_are_named(trained, tmp_path):
    prepared, run = trained("fusion-concat")
    write_lines(tmp_path / "samples.txt", ["S01", "NOPE-1", "NOPE-2"])
    paths = PredictPaths(run / "model.pt", prepared, tmp_path / "p.tsv",
                         samples=tmp_path / "samples.txt")
    with pytest.raises(InputError, match=r"2 samples in .*samples.txt are not in the prepared "
                                         r"table.*NOPE-1, NOPE-2"):
        run_predict(PredictConfig(device="cpu"), paths)
    write_lines(tmp_path / "samples.txt", [])
    with pytest.raises(InputError, match="samples.txt lists no samples"):
        run_predict(PredictConfig(device="cpu"), paths)
    assert not (tmp_path / "p.tsv").exists()


def test_metrics_do_not_overwrite_the_training_run(trained):
    prepared, run = trained("classification")
    before = (run / "metrics.json").read_text()
    paths = PredictPaths(run / "model.pt", prepared, run / "predictions.tsv")
    metrics = run_predict(PredictConfig(device="cpu"), paths)
    assert (run / "metrics.json").read_text() == before
    written = json.loads((run / "predict_metrics.json").read_text())
    assert written["n"] == 12 and written["accuracy"] == pytest.approx(metrics["accuracy"])


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="--prediction-passes must be >= 1, got 0"):
        PredictConfig(prediction_passes=0)
    with pytest.raises(InputError, match="--asv-sampling must be one of first, abundance, "
                                         "random; got 'best'"):
        PredictConfig(asv_sampling="best")
