"""Smoke test of the real-data benchmark (benchmarks/science.py) at its tiny preset: it writes
the table and the out-of-fold predictions, every sample is predicted once per run by the fold
that held its subject out, and no test subject is ever a training or validation sample."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from conftest import REPO, shared_dataset

sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    shared_dataset("sleep-apnea")
    import science

    work, results = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("results")
    code = science.main(["--preset", "smoke", "--studies", "sleep-apnea-age,sleep-apnea-exposure",
                         "--work-dir", str(work), "--results-dir", str(results)])
    return code, work, results


def test_writes_a_row_per_study_and_variant(smoke):
    code, _, results = smoke
    assert code == 0
    table = pd.read_csv(results / "science-smoke.tsv", sep="\t")
    assert set(table["study"]) == {"sleep-apnea-age", "sleep-apnea-exposure"}
    assert set(table["variant"]) == {"aam", "aam-ensemble", "hybrid-rf", "linear"}
    assert set(table["metric"]) == {"r2", "auc"}
    assert (table["ci_low"] <= table["diff"] + 1e-12).all()
    assert (table["diff"] <= table["ci_high"] + 1e-12).all()
    text = (results / "science-smoke.md").read_text()
    assert "command" in text and "machine" in text and "wall time" in text


def test_every_sample_predicted_once_by_the_fold_holding_its_subject_out(smoke):
    _, work, results = smoke
    pred = pd.read_csv(results / "science-smoke-predictions.tsv.gz", sep="\t", dtype={
        "sample_id": str, "subject": str})
    for (_, _, _), rows in pred.groupby(["study", "variant", "run"]):
        assert rows["sample_id"].is_unique and len(rows) == 184
        assert (rows["fold"] >= 0).all()
        assert rows.groupby("subject")["fold"].nunique().max() == 1  # grouped folds
    age = pred[(pred["study"] == "sleep-apnea-age") & (pred["variant"] == "aam")]
    for fold, rows in age.groupby("fold"):
        test = set(rows["sample_id"])
        run = work / "bench" / "sleep-apnea-age" / "aam" / f"fold~{fold}" / "seed~0"
        pretrain = work / "bench" / "pretrain-sleep-apnea" / f"fold~{fold}"
        for folder in (run, pretrain):
            seen = set()
            for name in ("train_samples.txt", "val_samples.txt"):
                seen |= set((folder / name).read_text().split())
            assert seen and not seen & test, folder


def test_classification_inner_validation_holds_both_classes(smoke):
    """Early stopping on a validation side of one class picks a constant model; the inner split
    of a classification study is stratified by the (subject-level) class."""
    from aam.data.metadata import read_metadata

    _, work, _ = smoke
    meta = read_metadata(REPO.parent / "shared" / "data" / "sleep-apnea" / "metadata.tsv")
    runs = sorted((work / "bench" / "sleep-apnea-exposure" / "aam").glob("fold~*/seed~0"))
    assert runs
    for run in runs:
        val = (run / "val_samples.txt").read_text().split()
        assert meta.loc[val, "exposure_type"].nunique() == 2, run


def test_linear_reference_is_one_deterministic_fit(smoke):
    _, _, results = smoke
    pred = pd.read_csv(results / "science-smoke-predictions.tsv.gz", sep="\t",
                       dtype={"sample_id": str})
    linear = pred[(pred["study"] == "sleep-apnea-age") & (pred["variant"] == "linear")]
    by_run = linear.pivot(index="sample_id", columns="run", values="prediction")
    assert by_run.notna().all().all() and (by_run.nunique(axis=1) == 1).all()


def test_inner_rotation_gives_ensemble_members_disjoint_validation_subjects():
    """With rotation (the default) the members of an ensemble validate on different subjects,
    every validation side holds both classes, and a study whose rarest class has too few
    subjects for the folds falls back to fewer folds instead of failing."""
    from aam_science.runner import inner_split
    from aam_science.settings import preset

    subjects = [f"s{i}" for i in range(12) for _ in range(3)]  # 12 subjects, 3 samples each
    ids = [f"x{i}" for i in range(len(subjects))]
    subject_of = dict(zip(ids, subjects))
    class_of = {s: int(subject_of[s][1:]) % 2 for s in ids}  # 6 subjects per class
    settings = preset("cpu")
    assert settings.inner_rotation
    vals = []
    for member in range(3):
        train, val = inner_split(ids, subject_of, 0, settings, class_of, member)
        assert set(train).isdisjoint(val) and set(train) | set(val) == set(ids)
        assert {class_of[s] for s in val} == {0, 1}
        vals.append({subject_of[s] for s in val})
    assert all(a.isdisjoint(b) for i, a in enumerate(vals) for b in vals[i + 1:])
    rare = {s: int(subject_of[s][1:]) < 3 for s in ids}  # only 3 subjects in one class
    sides = [inner_split(ids, subject_of, 0, settings, rare, m)[1] for m in range(3)]
    assert all({rare[s] for s in val} == {False, True} for val in sides)
    assert len({frozenset(v) for v in sides}) == 3
    held = inner_split(ids, subject_of, 0, preset("cpu", inner_rotation=False), class_of, 1)[1]
    assert held == inner_split(ids, subject_of, 0, preset("cpu", inner_rotation=False),
                               class_of, 0)[1]


@pytest.fixture(scope="module")
def ablations(tmp_path_factory):
    shared_dataset("sleep-apnea")
    shared_dataset("cf-sputum-corpus")
    import science

    work, results = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("results")
    code = science.main(["--preset", "smoke", "--ablations", "--studies", "sleep-apnea-age",
                         "--ablation-rows", "full,head-only,random-encoder,asv-identity,"
                         "head-only-identity,pretrained-corpus",
                         "--work-dir", str(work), "--results-dir", str(results)])
    return code, work, results


def test_ablation_run_compares_every_row_with_the_full_model(ablations):
    """science.py --ablations writes one line per row against `full` (full - row with its
    subject-bootstrap interval) and the out-of-fold predictions of every row."""
    from aam_science.ablations import ABLATIONS

    code, _, results = ablations
    assert code == 0
    table = pd.read_csv(results / "science-ablations-smoke.tsv", sep="\t")
    assert list(table["row"]) == [r for r in ABLATIONS if r != "full"]
    assert (table["full_minus_row"] - (table["full"] - table["row_value"])).abs().max() < 1e-3
    assert (table["ci_low"] <= table["full_minus_row"] + 1e-9).all()
    assert (table["full_minus_row"] <= table["ci_high"] + 1e-9).all()
    text = (results / "science-ablations-smoke.md").read_text()
    assert "head-only" in text and "verdict" in text and "cf-sputum" in text
    pred = pd.read_csv(results / "science-ablations-smoke-predictions.tsv.gz", sep="\t",
                       dtype={"sample_id": str})
    for _, rows in pred.groupby("row"):
        assert rows["sample_id"].is_unique and len(rows) == 184
        assert rows["prediction"].notna().all()


def test_ablation_rows_train_what_they_say(ablations):
    """head-only runs no epoch and has no target head; asv-identity's head reads identity;
    the full row starts from the benchmark's own pretrained encoder of the fold."""
    import torch

    _, work, _ = ablations
    runs = work / "bench" / "ablations" / "sleep-apnea-age"
    for fold in ("fold~0", "fold~1"):
        head = json.loads((runs / "head-only" / fold / "seed~0" / "metrics.json").read_text())
        assert head["epochs_run"] == 0 and head["config"]["attention_path"] is False
        state = torch.load(runs / "head-only" / fold / "seed~0" / "model.pt",
                           weights_only=True)["model_state"]
        assert not any(k.startswith(("head.", "fusion.", "target_encoder.")) for k in state)
        identity = json.loads((runs / "asv-identity" / fold / "seed~0" /
                               "metrics.json").read_text())
        assert identity["config"]["abundance_head_features"] == "identity"
        card = (runs / "full" / fold / "seed~0" / "model-card.md").read_text()
        assert str(work / "bench" / "pretrain-sleep-apnea" / fold / "encoder.pt") in card


def test_corpus_pretraining_sees_no_test_sample(ablations):
    """The corpus encoder trains on inner-train plus corpus samples, chooses on inner-validation
    (study samples only), and the joint table holds no test sample of the fold."""
    from aam.data.prepared import load_prepared

    _, work, results = ablations
    pred = pd.read_csv(results / "science-ablations-smoke-predictions.tsv.gz", sep="\t",
                       dtype={"sample_id": str})
    full = pred[pred["row"] == "full"]
    for fold, rows in full.groupby("fold"):
        test = set(rows["sample_id"])
        pretrain = work / "bench" / "pretrain-corpus-sleep-apnea" / f"fold~{fold}"
        train = set((pretrain / "train_samples.txt").read_text().split())
        val = set((pretrain / "val_samples.txt").read_text().split())
        corpus = {s for s in train if s.startswith("corpus.")}
        assert len(corpus) == 592 and not val & corpus  # 44 corpus samples under 1,000 reads
        assert not (train | val) & test
        joint = load_prepared(work / "bench" / "corpus-sleep-apnea" / f"fold~{fold}" /
                              "prepared")
        assert not set(joint.sample_ids) & test
        assert max(len(s) for s in joint.sequences) == 100


def test_a_second_ablation_run_reuses_the_rows_it_shares(ablations, tmp_path):
    """Rows whose inputs, settings and code are unchanged are read back, not trained again
    (the corpus row can run apart and pay for `full` once)."""
    import science

    _, work, results = ablations
    model = work / "bench" / "ablations" / "sleep-apnea-age" / "full" / "fold~0" / "seed~0" / \
        "model.pt"
    written = model.stat().st_mtime_ns
    assert science.main(["--preset", "smoke", "--ablations", "--studies", "sleep-apnea-age",
                         "--ablation-rows", "full,head-only", "--work-dir", str(work),
                         "--results-dir", str(tmp_path)]) == 0
    assert model.stat().st_mtime_ns == written
    first = pd.read_csv(results / "science-ablations-smoke.tsv", sep="\t")
    again = pd.read_csv(tmp_path / "science-ablations-smoke.tsv", sep="\t")
    assert list(again["row"]) == ["head-only"]
    assert float(again["full"].iloc[0]) == pytest.approx(float(first["full"].iloc[0]))

