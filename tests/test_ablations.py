"""The ablation settings of `aam train`: head only (--no-attention-path: the fitted start is
the model, no epoch runs) and ASV identity (--abundance-head-features identity: the fitted head
reads no sequence), and both as columns of the workflow's ablation table."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO
from finetune_fixtures import make_prepared, tiny_finetune_cfg

from aam.cli.__main__ import main as aam_main
from aam.config import FinetuneConfig
from aam.data.batch import Batch
from aam.data.tokens import tokenize
from aam.errors import InputError
from aam.models.identity import IdentityHead
from aam.training.finetune import FinetunePaths, run_finetune


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("ablation-data"))


def _train(prepared, out, **settings):
    cfg = tiny_finetune_cfg(epochs=2, group_by="subject", **settings)
    torch.manual_seed(0)
    return run_finetune(cfg, FinetunePaths(prepared, out))


def _predict(model_dir, data_dir, samples, out):
    assert aam_main(["predict", "--model", str(model_dir / "model.pt"), "--data-dir",
                     str(data_dir), "--samples", str(samples), "--output", str(out)]) == 0
    return pd.read_csv(out, sep="\t", dtype={"sample_id": str}).set_index("sample_id")


def test_head_only_runs_no_epoch_and_is_the_fitted_start(prepared, tmp_path):
    """Without the attention path no epoch runs, model.pt holds no target head, fusion or
    count head, and its validation score is the full model's epoch 0 (the same fitted start)."""
    kept = {"abundance_head_refit": False}
    head = _train(prepared, tmp_path / "head", attention_path=False, **kept)
    full = _train(prepared, tmp_path / "full", **kept)
    assert head["epochs_run"] == 0 and head["best_epoch"] == 0 and full["epochs_run"] == 2
    assert [row["epoch"] for row in head["history"]] == [0]
    assert head["history"][0]["val_loss"] == pytest.approx(full["history"][0]["val_loss"],
                                                           rel=1e-5)
    state = torch.load(tmp_path / "head" / "model.pt", weights_only=True)["model_state"]
    parts = {key.split(".")[0] for key in state}
    assert {"abundance_head", "category_effects", "intercept", "encoder"} <= parts
    assert not parts & {"head", "fusion", "target_encoder", "count_head", "category_embeddings"}
    # aam predict reads it back and predicts what training validated
    val = tmp_path / "head" / "val_samples.txt"
    predicted = _predict(tmp_path / "head", prepared, val, tmp_path / "pred.tsv")
    written = pd.read_csv(tmp_path / "head" / "val_predictions.tsv", sep="\t",
                          dtype={"sample_id": str}).set_index("sample_id")
    np.testing.assert_allclose(predicted.loc[written.index, "prediction"],
                               written["prediction"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("columns,given,builds", [
    ((), None, False), (("category",), None, True),   # unset: the path where metadata is fused
    ((), True, True), (("category",), False, False)])  # given: as given
def test_the_attention_path_is_built_where_categorical_columns_are_fused(columns, given,
                                                                          builds):
    cfg = tiny_finetune_cfg(columns=columns, attention_path=given)
    assert cfg.builds_attention_path is builds


def test_aam_train_without_categorical_columns_ships_the_fitted_start(prepared, tmp_path,
                                                                       capfd):
    """The default without metadata: no epoch runs and the log says why and how to fine-tune."""
    out = tmp_path / "run"
    assert aam_main(["train", "--data-dir", str(prepared), "--output-dir", str(out),
                     "--embedding-dim", "16", "--attention-heads", "2", "--attention-layers",
                     "1", "--batch-size", "8", "--token-limit", "16", "--device", "cpu",
                     "--categorical-columns", ""]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 0
    assert "no categorical columns are fused (give --attention-path" in capfd.readouterr().err


def test_head_only_refits_on_training_and_validation_samples(prepared, tmp_path):
    summary = _train(prepared, tmp_path / "head", attention_path=False)
    assert summary["abundance_head_refit"]["n_train"] == 32  # 24 training + 8 validation


@pytest.mark.parametrize("settings, message", [
    ({"conditional_output_scaling": "category"}, "--conditional-output-scaling is trained"),
    ({"selection_folds": 5}, "has no attention path to fine-tune"),
])
def test_head_only_refuses_what_only_fine_tuning_trains(settings, message):
    with pytest.raises(InputError, match=message):
        tiny_finetune_cfg(attention_path=False, **settings)


def _with_other_sequences(prepared, out):
    """A copy of ``prepared`` whose ASVs have other (random, distinct) sequences of the same
    length, with the same counts and metadata."""
    from aam.data.biom_io import write_table
    from aam.data.prepared import load_prepared

    data = load_prepared(prepared)
    rng = np.random.default_rng(7)
    others = ["".join(rng.choice(list("ACGT"), len(s))) for s in data.sequences]
    assert len(set(others)) == len(others) and not set(others) & set(data.sequences)
    shutil.copytree(prepared, out)
    write_table(out / "table.biom", data.sample_ids, others, data.counts)
    return out


def test_identity_head_reads_no_sequence(prepared, tmp_path):
    """Two tables with the same counts under different sequences: the identity head predicts
    the same; the sequence-kernel head does not."""
    renamed = _with_other_sequences(prepared, tmp_path / "renamed")
    results = {}
    for features in ("identity", "fourier"):
        for name, data_dir in (("original", prepared), ("renamed", renamed)):
            out = tmp_path / features / name
            summary = _train(data_dir, out, attention_path=False, token_limit=64,
                             abundance_head_features=features)
            results[features, name] = _predict(out, data_dir, out / "val_samples.txt",
                                               out / "pred.tsv")["prediction"]
            if features == "identity":
                assert summary["abundance_head_fit"]["n_features"] == 4 * (40 + 1)
    np.testing.assert_allclose(results["identity", "original"], results["identity", "renamed"],
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(results["fourier", "original"], results["fourier", "renamed"],
                           atol=1e-3)


def test_identity_with_the_attention_path_trains_and_predicts(prepared, tmp_path):
    summary = _train(prepared, tmp_path / "run", abundance_head_features="identity")
    assert summary["epochs_run"] == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["abundance_head_features"] == "identity"
    predicted = _predict(tmp_path / "run", prepared, tmp_path / "run" / "val_samples.txt",
                         tmp_path / "pred.tsv")
    assert len(predicted) == 8 and np.isfinite(predicted["prediction"]).all()


@pytest.mark.parametrize("features", ["fourier", "identity"])
def test_aam_explain_reads_a_head_only_model(prepared, tmp_path, features):
    """Integrated gradients over the abundance input explain a model without an attention
    path; per sample the attributions add up to the prediction's change (completeness)."""
    _train(prepared, tmp_path / "run", attention_path=False, abundance_head_features=features)
    out = tmp_path / "explain"
    assert aam_main(["explain", "--model", str(tmp_path / "run" / "model.pt"), "--data-dir",
                     str(prepared), "--output-dir", str(out), "--steps", "8"]) == 0
    summary = json.loads((out / "explain.json").read_text())
    assert summary["n_samples"] == 32
    assert summary["completeness"]["max_relative_gap"] < 1e-3
    assert summary["completeness"]["mean_abs_output_change"] > 0


def _batch(sequences: list[list[str]], counts: list[list[float]]) -> Batch:
    """A batch of samples holding the given ASV sequences (each distinct sequence once in
    ``unique_tokens``)."""
    distinct = sorted({s for sample in sequences for s in sample})
    row = {s: i for i, s in enumerate(distinct)}
    width = max(len(sample) for sample in sequences)
    inverse = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.bool)
    values = torch.zeros(len(sequences), width)
    for b, sample in enumerate(sequences):
        for s, seq in enumerate(sample):
            inverse[b, s], mask[b, s], values[b, s] = row[seq], True, counts[b][s]
    return Batch(sample_ids=[f"s{b}" for b in range(len(sequences))],
                 sample_index=torch.arange(len(sequences)),
                 asv_index=torch.where(mask, inverse, -1), asv_mask=mask, counts=values,
                 unique_tokens=torch.from_numpy(tokenize(distinct, 8)).long(),
                 unique_asv_index=torch.arange(len(distinct)), asv_inverse=inverse)


def test_an_asv_outside_the_vocabulary_gets_only_the_shared_term():
    head = IdentityHead(out_dim=1, n_features=1, budget=4, max_bp=8)
    head.set_vocabulary(torch.from_numpy(tokenize(["ACGTACGT", "TTTTAAAA"], 8)))
    batch = _batch([["TTTTAAAA", "GGGGCCCC"], ["ACGTACGT", "ACGTACGT"[:6]]], [[1, 2], [3, 4]])
    columns = head.columns(batch)
    assert columns.tolist() == [[1, -1], [0, -1]]  # a prefix of a known ASV is another ASV
    matrix = torch.randn(2 * 3, 1, dtype=torch.float64)  # (1 + F) x (V + 1)
    head.set_output_matrix(matrix)
    features = batch.counts.unsqueeze(-1)
    design = head.design(columns, features, batch.asv_mask)
    assert design.shape == (2, 6)
    with torch.no_grad():
        forward = head(columns, features, batch.asv_mask)
    torch.testing.assert_close(forward.double(), design @ matrix, rtol=1e-5, atol=1e-6)
    # the unseen ASV of sample 0 adds the shared terms only: bias + count x shared slope
    w = matrix[:, 0]
    expected = ((w[1] + w[2]) + 1 * (w[4] + w[5]) + (w[2] + 2 * w[5])) / 4
    assert float(forward[0, 0]) == pytest.approx(float(expected), rel=1e-5)


def test_head_only_and_identity_are_ablation_columns(monkeypatch):
    """The workflow's ablation columns are `aam train` flags without dashes: the new settings
    pass through to flags the parser accepts, and the full ablation table holds their rows."""
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_args import train_flags

    from aam.cli.train import build_parser

    config = {"prepare": {"task": "regression", "categorical_columns": []},
              "model": {}, "finetune": {}}
    row = {"attention-path": "false", "abundance-head-features": "identity",
           "pretrained": "true"}
    flags = train_flags(row, config)
    assert "--no-attention-path" in flags and "--abundance-head-features identity" in flags
    args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o",
                                      *flags.split()])
    assert args.attention_path is False and args.abundance_head_features == "identity"
    table = pd.read_csv(REPO / "config" / "ablations-full.tsv", sep="\t", dtype=str,
                        keep_default_na=False)
    assert "false" in set(table["attention-path"])
    assert "identity" in set(table["abundance-head-features"])
    assert {"false"} <= set(table["pretrained"])


def test_config_round_trips_the_ablation_settings():
    from aam.config import from_dict, to_dict

    cfg = FinetuneConfig(attention_path=False, abundance_head_features="identity")
    assert from_dict(FinetuneConfig, to_dict(cfg)) == cfg


def _wide_design(n: int, p: int, classes: int = 0, seed: int = 0):
    """A _Design with many more (sparse, identity-like) columns than samples; a few columns
    never vary."""
    from aam.training.penalised_fit import Design as _Design

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, p, generator=gen, dtype=torch.float64)
    x = x * (torch.rand(n, p, generator=gen, dtype=torch.float64) < 0.05)
    x[:, :7] = 0.0  # ASVs these samples do not hold
    signal = x[:, 7:40].sum(1)
    target = ((signal > signal.median()).long() if classes else signal
              + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64))
    return _Design([f"s{i}" for i in range(n)], x, torch.zeros(n, 0, dtype=torch.float64),
                   torch.zeros(n, max(classes, 1), dtype=torch.float64), target)


def test_wide_ridge_matches_an_independent_ridge():
    """With columns far outnumbering samples the fit solves through the Gram matrix; its
    solution is scikit-learn's ridge on the same scaled features."""
    from sklearn.linear_model import Ridge

    from aam.training.penalised_fit import Solver as _Solver

    design = _wide_design(40, 4200)
    solver = _Solver(design, torch.nn.functional.mse_loss, classification=False)
    z = solver.z(design)
    for penalty, (w, b) in zip((0.1, 10.0), solver.fits((0.1, 10.0))):
        reference = Ridge(alpha=penalty).fit(z.numpy(), design.target.numpy())
        np.testing.assert_allclose(w[:, 0].numpy(), reference.coef_, atol=1e-8)
        assert float(b[0]) == pytest.approx(float(reference.intercept_), abs=1e-8)
        assert float(w[:7].abs().max()) == 0.0


def test_wide_logistic_fit_reaches_the_full_problems_optimum():
    """The L2-logistic fit over many more columns than samples runs in their row space and
    reaches the optimum of the problem over every column."""
    from aam.training.penalised_fit import Solver as _Solver, _lbfgs

    design = _wide_design(40, 4200, classes=2)

    def loss(pred, target):
        return torch.nn.functional.cross_entropy(pred, target)

    solver = _Solver(design, loss, classification=True)
    z = solver.z(design)
    (w, b), = solver.fits((1.0,))
    weight = torch.zeros(z.shape[1], 2, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    _lbfgs(z, design.offset, design.target, loss, 1.0 / 40, weight, bias)

    def objective(w, b):
        return float(loss(z @ w + b, design.target) + w.pow(2).sum() / 40)

    assert objective(w, b) == pytest.approx(objective(weight.detach(), bias.detach()),
                                            rel=1e-4, abs=1e-6)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
