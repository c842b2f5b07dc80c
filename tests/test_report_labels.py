"""Readable model labels and the explain section of aam compare."""

import json

import pandas as pd
import pytest

from aam.cli.compare import main
from aam.reports.labels import derive_label
from test_compare import ABLATION, fabricate


@pytest.mark.parametrize(("model", "params", "label"), [
    (ABLATION, {"categorical-fusion": "cross-attention", "freeze-base": "true"},
     "cross-attention, frozen"),
    ("x", {"categorical-fusion": "concat", "freeze-base": "false", "pretrained": "false"},
     "concat, no pretraining"),
    ("x", {"categorical-fusion": "gmu", "asv-sampling": "random", "count-prediction": "false",
           "target-transform": "zscore"},
     "gmu, random ASVs, no count head, target-transform zscore"),
    ("x", {"categorical-fusion": "add", "freeze-base": "true", "lr": "0.01"},
     "add, frozen, lr 0.01"),
    ("x", {"categorical-fusion": "concat", "attention-path": "false",
           "abundance-head-features": "identity"}, "concat, head only, ASV identity head"),
    ("x", {"categorical-fusion": "concat", "attention-path": "true",
           "abundance-head-features": "fourier"}, "concat"),
    ("rf", {}, "random forest"),
])
def test_labels_are_derived_from_non_default_settings(model, params, label):
    assert derive_label(model, params) == label


def _explained(root, spearman, truth=None):
    for fold in (0, 1):
        for seed in (0, 1):
            folder = root / "finetune" / ABLATION / f"fold~{fold}" / f"seed~{seed}" / "explain"
            folder.mkdir(parents=True)
            (folder / "explain.json").write_text(json.dumps({
                "rank_agreement_with_rf": {"spearman_top50_union": spearman,
                                           "overlap_top20": 0.25},
                "rank_agreement_with_linear": {"spearman_top50_union": 0.1},
                **({"truth": truth} if truth else {}),
                "completeness": {"max_relative_gap": 0.001}}))


def test_explicit_labels_and_explain_section(tmp_path):
    fabricate(tmp_path / "results")
    _explained(tmp_path / "results", 0.5)
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"model\tlabel\n{ABLATION}\tCA frozen\n")
    out = tmp_path / "out"
    assert main(["--results-dir", str(tmp_path / "results"), "--output-dir", str(out),
                 "--labels", str(labels), "--n-bootstrap", "100", "--no-png"]) == 0
    table = pd.read_csv(out / "comparison.tsv", sep="\t")
    assert dict(zip(table["model"], table["label"])) == {
        ABLATION: "CA frozen", "categorical-fusion~add": "add", "rf": "random forest"}
    runs = pd.read_csv(out / "runs.tsv", sep="\t")
    assert set(zip(runs["model"], runs["label"])) == {
        (ABLATION, "CA frozen"), ("categorical-fusion~add", "add"), ("rf", "random forest")}
    summary = (out / "summary.md").read_text()
    assert "**CA frozen** beats RF" in summary
    assert "## Which ASVs drive the predictions" in summary
    assert "| CA frozen | 4 | 0.500 | 0.25 | 0.100 |" in summary
    assert "The simulator's truth" not in summary  # real data: no truth table
    agreement = pd.read_csv(out / "explain_agreement.tsv", sep="\t")
    assert len(agreement) == 4 and set(agreement["label"]) == {"CA frozen"}
    assert "CA frozen" in (out / "metric_r2.svg").read_text()  # figures use the labels too


def test_label_naming_two_models_is_an_input_error(tmp_path, capsys):
    fabricate(tmp_path / "results", folds=1, seeds=(0,))
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"model\tlabel\n{ABLATION}\tsame\nfusion~add\tsame\n")
    assert main(["--results-dir", str(tmp_path / "results"), "--output-dir",
                 str(tmp_path / "out"), "--labels", str(labels)]) == 2
    assert "names two models" in capsys.readouterr().err


def test_the_simulators_truth_is_reported_beside_the_baselines(tmp_path):
    fabricate(tmp_path / "results")
    _explained(tmp_path / "results", 0.5, truth={"aam_auroc": 0.9, "rf_auroc": 0.95,
                                                 "linear_auroc": 0.7})
    out = tmp_path / "out"
    assert main(["--results-dir", str(tmp_path / "results"), "--output-dir", str(out),
                 "--n-bootstrap", "100", "--no-figures"]) == 0
    summary = (out / "summary.md").read_text()
    assert "| model | runs | AAM | random forest | linear (CLR) |" in summary
    assert "| 4 | 0.900 | 0.950 | 0.700 |" in summary
