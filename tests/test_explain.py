"""aam explain: integrated-gradient completeness, outputs for every fusion and both tasks,
per-level cross-attention, taxonomy join, the forest comparison and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aam.cli.__main__ import main as aam_main
from aam.data.prepared import load_prepared
from aam.data.taxonomy import feature_md5
from aam.explain.attribution import explain_batch
from aam.explain.tables import rank_agreement, signal_auroc
from aam.inference import load_predictor
from aam.models.fusion import FUSIONS
from finetune_fixtures import lazy_trainer, prepare_both_tasks
from qiime2_rules import check_qiime2_metadata

RUNS = {f"fusion-{name}": ("regression", {"fusion": name}) for name in sorted(FUSIONS)}
RUNS.update({
    "no-categories": ("regression", {"columns": ()}),
    "classification": ("classification", {"columns": ("batch",), "task": "classification"}),
    "classification-cross": ("classification", {"columns": ("batch",), "task": "classification",
                                                "fusion": "cross-attention"}),
    "frozen-scaled": ("regression", {"freeze_base": True, "columns": ("category", "batch"),
                                     "conditional_output_scaling": "batch"}),
})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """12 simulated samples x 16 ASVs, prepared for regression and classification."""
    return prepare_both_tasks(tmp_path_factory.mktemp("explain"))


@pytest.fixture(scope="module")
def trained(root):
    """name -> (prepared dir, model.pt); each configuration is trained once, on first use."""
    get = lazy_trainer(root, RUNS)
    return lambda name: (get(name)[0], get(name)[1] / "model.pt")


def _explain(prepared: Path, model: Path, out: Path, *flags: str) -> pd.DataFrame:
    assert aam_main(["explain", "--model", str(model), "--data-dir", str(prepared),
                     "--output-dir", str(out), *flags]) == 0
    return pd.read_csv(out / "attributions.tsv", sep="\t", keep_default_na=False)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_model_is_explained_completely(name, trained, tmp_path):
    prepared, model = trained(name)
    table = _explain(prepared, model, tmp_path, "--steps", "64")
    summary = json.loads((tmp_path / "explain.json").read_text())
    samples = pd.read_csv(tmp_path / "samples.tsv", sep="\t")
    assert summary["n_samples"] == 12 and len(samples) == 12
    # completeness: per sample (and class) the attributions sum to f(x) - f(baseline)
    assert summary["completeness"]["max_relative_gap"] < 0.05, summary["completeness"]
    delta = (samples.filter(regex="^output").to_numpy()
             - samples.filter(like="baseline_output").to_numpy())
    sums = samples.filter(like="attribution_sum").to_numpy()
    np.testing.assert_allclose(sums, delta, rtol=0.05, atol=1e-4)
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["mean_abs_attribution"].is_monotonic_decreasing
    per_sample = pd.read_csv(tmp_path / "per_sample_attributions.tsv", sep="\t")
    pooled = per_sample.groupby("sample_id")["encoder_pool_weight"].sum()
    np.testing.assert_allclose(pooled.to_numpy(), 1.0, atol=1e-4)  # softmax over each sample
    if RUNS[name][0] == "classification":
        classes = json.loads((tmp_path / "explain.json").read_text())["classes"]
        assert {f"mean_abs_attribution_{c}" for c in classes} <= set(table.columns)
    else:
        assert "mean_attribution" in table.columns
    assert (tmp_path / "attributions.svg").is_file()
    assert (tmp_path / "cross_attention.tsv").is_file() == ("cross" in name)
    check_qiime2_metadata(tmp_path / "attributions.tsv", kind="feature")


def test_attributions_of_one_occurrence_follow_its_abundance(trained):
    """An ASV occurrence with the baseline abundance gets no attribution, others do."""
    prepared, model_path = trained("fusion-concat")
    model, payload = load_predictor(model_path)
    from aam.explain.collect import collect
    data = load_prepared(prepared)
    got = collect(model, payload, data, data.sample_ids[:4], data.metadata, 16, None, None,
                  torch.device("cpu"))
    assert (got.per_sample["count"] > 0).all()
    assert (got.per_sample["attribution"] != 0).mean() > 0.9


def _first_samples(run: tuple[Path, Path], n: int):
    """(the run's model, a batch of its prepared data's first ``n`` samples, category 0)."""
    from aam.data.dataset import SampleDataset, make_loader

    prepared, model_path = run
    model, _ = load_predictor(model_path)
    data = load_prepared(prepared)
    columns = len(model.cfg.data.categorical_columns)
    ds = SampleDataset(data, data.sample_ids[:n], model.cfg.data,
                       cat_ids=np.zeros((n, columns), dtype=np.int64))
    return model, next(iter(make_loader(ds, n, False, 0)))


def test_the_abundance_heads_term_is_explained(trained):
    """The abundance head reads the same count features as the encoder, so integrated
    gradients see its term: the explained change f(x) - f(baseline) grows by exactly the head's
    own change between the observed and the baseline features."""
    from aam.explain.attribution import zero_count_features

    model, batch = _first_samples(trained("fusion-concat"), 4)
    head = model.abundance_head.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    before = explain_batch(model, batch, steps=16)
    with torch.no_grad():
        head.weight.normal_(std=5.0)
        head.bias.normal_(std=5.0)
        enc = model.encode(batch)
        base = zero_count_features(enc.count_features)
        change = (model.abundance_head(enc.asv_vectors, enc.count_features, batch.asv_mask)
                  - model.abundance_head(enc.asv_vectors, base, batch.asv_mask))
    after = explain_batch(model, batch, steps=16)
    assert change.abs().min() > 1e-3
    explained = (after.output - after.baseline_output) - (before.output - before.baseline_output)
    torch.testing.assert_close(explained, change, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after.attribution.sum(1), after.output - after.baseline_output,
                               rtol=0.05, atol=1e-3)


def test_occurrence_at_the_baseline_gets_zero_attribution(trained, root, monkeypatch):
    import aam.models.encoder as encoder
    model, batch = _first_samples(trained("fusion-gmu"), 3)
    features = encoder.count_features

    def at_baseline(counts, mask):  # the first occurrence's features are the baseline (0)
        out = features(counts, mask).clone()
        out[0, 0] = 0.0
        return out

    monkeypatch.setattr(encoder, "count_features", at_baseline)
    exp = explain_batch(model, batch, steps=8)
    assert float(exp.attribution[0, 0, 0]) == 0.0
    assert (exp.attribution[~batch.asv_mask] == 0).all()  # padding never gets attribution


def test_cross_attention_weights_per_level(trained, tmp_path):
    prepared, model = trained("fusion-cross-attention")
    _explain(prepared, model, tmp_path, "--top-features", "5")
    cross = pd.read_csv(tmp_path / "cross_attention.tsv", sep="\t")
    meta = load_prepared(prepared).metadata
    assert set(cross["column"]) == {"category"}
    assert set(cross["level"]) == set(meta["category"])
    assert cross["feature-id"].nunique() == 5
    assert cross["token"].str.startswith("category#").all()
    assert ((cross["mean_weight"] >= 0) & (cross["mean_weight"] <= 1)).all()


def test_taxonomy_and_forest_are_joined(trained, tmp_path):
    prepared, model = trained("fusion-add")
    sequences = load_prepared(prepared).sequences
    taxonomy = tmp_path / "taxonomy.tsv"
    taxonomy.write_text("Feature ID\tTaxon\tConfidence\n" + "".join(
        f"{feature_md5(s)}\tk__Bacteria; g__Genus{i}\t0.9\n" for i, s in enumerate(sequences)))
    rf = tmp_path / "feature_importance.tsv"
    pd.DataFrame({"sequence": sequences[::-1],
                  "importance": np.linspace(1, 0.1, len(sequences))}).to_csv(rf, sep="\t",
                                                                             index=False)
    out = tmp_path / "out"
    table = _explain(prepared, model, out, "--taxonomy", str(taxonomy), "--rf-importances",
                     str(rf))
    by_seq = dict(zip(sequences, range(len(sequences))))
    assert all(t == f"k__Bacteria; g__Genus{by_seq[s]}"
               for s, t in zip(table["sequence"], table["taxon"]))
    assert table["rf_rank"].notna().all()
    agreement = json.loads((out / "explain.json").read_text())["rank_agreement_with_rf"]
    assert set(agreement) >= {"spearman_top50_union", "overlap_top20"}


def test_rank_agreement():
    a = pd.Series(np.arange(60, 0, -1.0), index=[f"s{i}" for i in range(60)])
    same = rank_agreement(a, a)
    assert same["spearman_top50_union"] == pytest.approx(1.0) and same["overlap_top20"] == 1.0
    reverse = rank_agreement(a, pd.Series(a.to_numpy()[::-1], index=a.index))
    assert reverse["overlap_top20"] == 0.0 and reverse["spearman_top50_union"] < 0


def test_signal_auroc():
    scores = pd.Series([3.0, 2.0, 1.0, 0.5], index=list("abcd"))
    assert signal_auroc(scores, {"a", "b"}) == 1.0
    assert signal_auroc(scores, {"c", "d"}) == 0.0
    assert signal_auroc(pd.Series(1.0, index=list("abcd")), {"a"}) == 0.5


def test_encoder_checkpoint_and_bad_settings_are_one_line_errors(root, tmp_path, capsys):
    bad = tmp_path / "missing.pt"
    code = aam_main(["explain", "--model", str(bad), "--data-dir",
                     str(root / "prepared-regression"), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "missing.pt" in capsys.readouterr().err
    code = aam_main(["explain", "--model", str(bad), "--data-dir",
                     str(root / "prepared-regression"), "--output-dir", str(tmp_path / "o"),
                     "--steps", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--steps" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_samples_list_and_stored_taxonomy(trained, tmp_path, capsys):
    prepared, model = trained("fusion-concat")
    data = load_prepared(prepared)
    (tmp_path / "s.txt").write_text("\n".join(data.sample_ids[:3]) + "\n")
    copy = tmp_path / "prepared"
    import shutil
    shutil.copytree(prepared, copy)
    (copy / "taxonomy.tsv").write_text("Feature ID\tTaxon\n" + "".join(
        f"{s}\tk__Bacteria; g__Stored\n" for s in data.sequences))
    table = _explain(copy, model, tmp_path / "out", "--samples", str(tmp_path / "s.txt"))
    assert set(table["taxon"]) == {"k__Bacteria; g__Stored"}  # picked up without --taxonomy
    per_sample = pd.read_csv(tmp_path / "out" / "per_sample_attributions.tsv", sep="\t")
    assert sorted(per_sample["sample_id"].unique()) == sorted(data.sample_ids[:3])
    (tmp_path / "bad.txt").write_text("nope\n")
    assert aam_main(["explain", "--model", str(model), "--data-dir", str(copy), "--output-dir",
                     str(tmp_path / "bad"), "--samples", str(tmp_path / "bad.txt")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_rank_agreement_with_the_linear_baseline(trained, root, tmp_path):
    """--linear-importances (aam linear-baseline's |coefficients|) adds linear ranks, the rank
    agreement with them, and the linear model's truth AUROC beside AAM's and the forest's."""
    import json

    prepared, model = trained("fusion-concat")
    ids = pd.read_csv(prepared / "metadata.tsv", sep="\t", dtype=str)["sample_id"].tolist()
    (tmp_path / "train.txt").write_text("\n".join(ids[:8]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(ids[8:]) + "\n")
    for command in ("linear-baseline", "rf-baseline"):
        assert aam_main([command, "--data-dir", str(prepared), "--metadata-column", "target",
                         "--train-samples", str(tmp_path / "train.txt"), "--test-samples",
                         str(tmp_path / "test.txt"), "--output",
                         str(tmp_path / command / "predictions.tsv")]) == 0
    table = _explain(prepared, model, tmp_path / "ex", "--linear-importances",
                     str(tmp_path / "linear-baseline" / "feature_importance.tsv"),
                     "--rf-importances", str(tmp_path / "rf-baseline" / "feature_importance.tsv"),
                     "--truth", str(root / "sim" / "truth.json"))
    summary = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert {"rank_agreement_with_linear", "rank_agreement_with_rf"} <= set(summary)
    assert {"linear_rank", "rf_rank"} <= set(table.columns)
    assert {"aam_auroc", "rf_auroc", "linear_auroc"} <= set(summary["truth"])
