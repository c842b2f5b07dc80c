"""run_finetune end to end on tiny simulated data: outputs, reload, classification, passes,
frozen-base learning, pretrained encoder, resume semantics, parameter groups."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from aam.config import PretrainConfig, replace, to_dict
from aam.data.prepared import read_sample_list
from aam.errors import InputError
from aam.models.predictor import Predictor
from aam.models.pretrain import PretrainModel
from aam.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from aam.training.distributed import DistContext
from aam.training.finetune import (FinetunePaths, parameter_groups, predictor_from_checkpoint,
                                   run_finetune)
from finetune_fixtures import make_prepared, tiny_finetune_cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("ft"))


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_finetune_cfg("gmu", columns=("category", "batch"), target_transform="zscore")
    metrics = run_finetune(cfg, FinetunePaths(prepared, out, fold="0"))
    return out, metrics


def test_outputs_follow_the_file_contracts(trained, prepared):
    out, metrics = trained
    train = read_sample_list(out / "train_samples.txt")
    val = read_sample_list(out / "val_samples.txt")
    assert len(train) + len(val) == 32 and not set(train) & set(val)
    table = pd.read_csv(out / "val_predictions.tsv", sep="\t", dtype={"sample_id": str})
    assert list(table.columns) == ["sample_id", "prediction", "actual"]
    assert sorted(table["sample_id"]) == sorted(val)
    meta = pd.read_csv(prepared / "metadata.tsv", sep="\t", dtype=str, index_col=0)
    np.testing.assert_allclose(table["actual"],
                               meta.loc[table["sample_id"], "target"].astype(float))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["task"] == "regression" and saved["n"] == len(val)
    assert {"r2", "mae", "rmse", "seed", "fold", "wall_time_s", "config"} <= set(saved)
    assert saved["fold"] == "0" and saved["config"]["fusion"]["name"] == "gmu"
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "model.pt", "config.resolved.yaml"):
        assert (out / name).is_file()
    assert any((out / "tensorboard").iterdir())


def test_model_pt_carries_what_predict_needs_and_reloads_identically(trained):
    out, _ = trained
    payload = load_checkpoint(out / "model.pt", "predictor")
    state = payload.predictor
    assert state.target_transform["name"] == "zscore"
    assert set(state.categorical_vocab) == {"category", "batch"}
    assert payload.config["fusion"]["cardinalities"] == [
        len(state.categorical_vocab["category"]) + 1, len(state.categorical_vocab["batch"]) + 1]
    model_a, model_b = predictor_from_checkpoint(payload), predictor_from_checkpoint(payload)
    for (_, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(a, b)
    best = load_checkpoint(out / "checkpoints" / "best.pt", "predictor")
    assert all(torch.equal(v, payload.model_state[k]) for k, v in best.model_state.items())


def test_checkpoint_reload_gives_identical_predictions(prepared, tmp_path):
    cfg = tiny_finetune_cfg("perceiver", epochs=1)
    run_finetune(cfg, FinetunePaths(prepared, tmp_path))
    first = pd.read_csv(tmp_path / "val_predictions.tsv", sep="\t")
    # resuming at the last epoch trains nothing and re-evaluates the reloaded best model
    run_finetune(cfg, FinetunePaths(prepared, tmp_path / "again",
                                    resume_from=tmp_path / "checkpoints" / "last.pt"))
    again = pd.read_csv(tmp_path / "again" / "val_predictions.tsv", sep="\t")
    np.testing.assert_allclose(first["prediction"], again["prediction"], rtol=1e-5)


def test_classification_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    prepared = make_prepared(root, task="classification")
    out = root / "out"
    cfg = tiny_finetune_cfg("concat", columns=("batch",), task="classification",
                            class_weights=True, epochs=1)
    metrics = run_finetune(cfg, FinetunePaths(prepared, out))
    classes = load_checkpoint(out / "model.pt", "predictor").predictor.classes
    assert len(classes) >= 2
    table = pd.read_csv(out / "val_predictions.tsv", sep="\t", dtype=str)
    assert [c for c in table.columns if c.startswith("prob_")] == [f"prob_{c}" for c in classes]
    probs = table[[f"prob_{c}" for c in classes]].astype(float).to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert set(table["prediction"]) <= set(classes)
    assert {"accuracy", "balanced_accuracy", "f1_macro", "auc"} <= set(metrics)


def test_val_prediction_passes_average_random_draws(prepared, tmp_path):
    cfg = tiny_finetune_cfg("add", epochs=1, asv_sampling="random", token_limit=4,
                            val_prediction_passes=3)
    run_finetune(cfg, FinetunePaths(prepared, tmp_path))
    table = pd.read_csv(tmp_path / "val_predictions.tsv", sep="\t")
    assert (table["n_passes"] == 3).all()
    assert (table["std"] > 0).any()


@pytest.mark.parametrize("workers", [0, 2])
def test_val_prediction_passes_differ_with_any_number_of_workers(prepared, tmp_path, workers):
    """Each pass draws other ASVs whether the loader has workers or not (std > 0), and a rerun
    with the same seed gives the same table."""
    cfg = tiny_finetune_cfg("add", epochs=1, asv_sampling="random", token_limit=4,
                            val_prediction_passes=3, num_workers=workers)
    tables = []
    for run in ("a", "b"):
        run_finetune(cfg, FinetunePaths(prepared, tmp_path / run))
        tables.append(pd.read_csv(tmp_path / run / "val_predictions.tsv", sep="\t"))
    assert (tables[0]["std"] > 0).mean() > 0.5
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_val_prediction_passes_without_random_sampling_warns(prepared, tmp_path, caplog):
    cfg = tiny_finetune_cfg("add", epochs=1, val_prediction_passes=3)
    with caplog.at_level(logging.WARNING):
        run_finetune(cfg, FinetunePaths(prepared, tmp_path))
    assert "--val-prediction-passes 3 does nothing with --asv-sampling abundance" in caplog.text
    assert "std" not in pd.read_csv(tmp_path / "val_predictions.tsv", sep="\t").columns


def test_frozen_cross_attention_with_category_normalisation_learns(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    prepared = make_prepared(root, samples=64)
    # the category effect must be learnt (fusion + per-category scaling): batch has no effect
    cfg = tiny_finetune_cfg("cross-attention", columns=("category", "batch"), epochs=5,
                            freeze_base=True, asv_sampling="random",
                            target_transform="zscore-category", normalize_by=("batch",),
                            conditional_output_scaling="category", lr=1e-2,
                            count_prediction=False, batch_size=8)
    metrics = run_finetune(cfg, FinetunePaths(prepared, root / "out"))
    r2 = [row["r2"] for row in metrics["history"]]
    assert max(r2[1:]) > r2[0] + 0.1, r2
    table = pd.read_csv(root / "out" / "val_predictions.tsv", sep="\t")
    assert table["prediction"].std() > 0.1  # not a constant-mean predictor


def test_parameter_groups_split_categorical_parameters(prepared):
    cfg = replace(tiny_finetune_cfg("gmu", freeze_base=True, categorical_lr=0.05),
                  fusion=replace(tiny_finetune_cfg().fusion, name="gmu", cardinalities=(3,)))
    cfg = replace(cfg, model=replace(cfg.model, max_bp=100))
    model = Predictor(cfg)
    base, cat = parameter_groups(model, cfg)
    assert (base["name"], base["lr"], cat["name"], cat["lr"]) == ("base", 3e-3, "categorical", 0.05)
    cat_ids = {id(p) for p in cat["params"]}
    assert cat_ids == {id(p) for m in (model.category_embeddings, model.fusion)
                       for p in m.parameters()}
    assert not {id(p) for p in model.encoder.parameters()} & {id(p) for p in base["params"]}


def test_pretrained_encoder_sizes_override_and_frozen_weights_stay(prepared, tmp_path, caplog):
    pre_cfg = PretrainConfig(model=replace(tiny_finetune_cfg().model, embedding_dim=8,
                                           max_bp=100))
    pre = PretrainModel(pre_cfg)
    path = tmp_path / "encoder.pt"
    save_checkpoint(path, Checkpoint("encoder", to_dict(pre_cfg), pre.state_dict()))
    cfg = tiny_finetune_cfg("concat", epochs=1, freeze_base=True)
    with caplog.at_level(logging.INFO):
        run_finetune(cfg, FinetunePaths(prepared, tmp_path / "out", pretrained_encoder=path))
    assert "override the given ones" in caplog.text
    state = load_checkpoint(tmp_path / "out" / "model.pt", "predictor").model_state
    for key, value in pre.encoder.state_dict().items():
        assert torch.equal(state[f"encoder.{key}"], value)


@pytest.fixture(scope="module")
def one_epoch(prepared, tmp_path_factory):
    """A finished 1-epoch concat run (the source both resume tests continue from)."""
    cfg = tiny_finetune_cfg("concat", epochs=1)
    out = tmp_path_factory.mktemp("one-epoch")
    run_finetune(cfg, FinetunePaths(prepared, out))
    return cfg, out / "checkpoints" / "last.pt"


def test_resume_with_new_lr_and_output_dir(prepared, one_epoch, tmp_path, caplog):
    cfg, last = one_epoch
    new = replace(cfg, train=replace(cfg.train, epochs=2, lr=1e-4))
    with caplog.at_level(logging.INFO):
        run_finetune(new, FinetunePaths(prepared, tmp_path / "b", resume_from=last))
    assert caplog.text.count("lr 0.003 (checkpoint) -> 0.0001 (--lr)") == 1
    last = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", "predictor")
    assert last.epoch == 2
    peaks = {g["name"]: g["initial_lr"] for g in last.optimizer_state["param_groups"]}
    assert peaks == {"base": 1e-4, "categorical": 1e-2}  # categorical_lr stays its own
    for name in ("checkpoints/best.pt", "val_predictions.tsv", "metrics.json", "model.pt"):
        assert (tmp_path / "b" / name).is_file()


def test_resume_writes_checkpoints_to_new_dir_immediately(prepared, one_epoch, tmp_path):
    cfg, last = one_epoch
    run_finetune(cfg, FinetunePaths(prepared, tmp_path / "b", resume_from=last))
    # no epoch ran (already at 1 of 1), yet NEW holds checkpoints and the best predictions
    assert (tmp_path / "b" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "b" / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "b" / "val_predictions.tsv").is_file()


def test_overlapping_sample_lists_are_rejected(prepared, tmp_path):
    first, second = pd.read_csv(prepared / "metadata.tsv", sep="\t", dtype=str).iloc[:2, 0]
    (tmp_path / "t.txt").write_text(f"{first}\n{second}\n")
    (tmp_path / "v.txt").write_text(f"{second}\n")
    with pytest.raises(InputError, match=rf"1 \(first 1: {second}\) samples are in both"):
        run_finetune(tiny_finetune_cfg(), FinetunePaths(prepared, tmp_path / "o",
                                                        tmp_path / "t.txt", tmp_path / "v.txt"))


def test_cross_attention_weights_reach_tensorboard_as_an_image(prepared, tmp_path):
    """Heads x categorical tokens, averaged over validation samples (each row sums to 1)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from aam.training.finetune_objective import AttentionMap

    cfg = tiny_finetune_cfg("cross-attention", columns=("category", "batch"), epochs=1)
    run_finetune(cfg, FinetunePaths(prepared, tmp_path))
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert "fusion/cross_attention_weights" in tags and "best/cross_attention_weights" in tags
    weights = torch.zeros(2, 2, 3, 8)  # B, H, S, T; sample 1 has one padded position
    weights[..., 0] = 1.0
    weights[1, :, 2] = 0.0
    mean = AttentionMap()
    mean.add(weights)
    got = mean.mean(DistContext())
    assert got.shape == (2, 8) and np.allclose(got.sum(1), 1.0) and np.allclose(got[:, 0], 1.0)
