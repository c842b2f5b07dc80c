"""aam compare with two baselines (forest and linear), the selection column and the metadata
permutation column: verdict words per baseline, inert fusions marked and not ranked."""

import json

import numpy as np
import pandas as pd

from aam.predictions import write_metrics, write_predictions
from aam.reports.columns import selection_cell, verdict_word
from aam.reports.summary import CompareConfig, write_report

GOOD, INERT = "categorical-fusion~concat", "categorical-fusion~gmu"


def fabricate(root, n=80):
    """Two folds: concat (noise 1, uses its metadata), gmu (noise 0.5, metadata inert), the
    forest (noise 2) and the linear model (noise 1)."""
    rng = np.random.default_rng(3)
    noise = {f"finetune/{GOOD}": 1.0, f"finetune/{INERT}": 0.5, "rf": 2.0, "linear": 1.0}
    for fold in range(2):
        ids = [f"f{fold}s{i:03d}" for i in range(n)]
        truth = rng.normal(10, 3, n)
        for model, sd in noise.items():
            run = root / model / f"fold~{fold}" / "seed~0"
            write_predictions(run / "predictions.tsv", ids, truth + rng.normal(0, sd, n),
                              actual=truth)
            meta = {"task": "regression", "seed": 0, "fold": fold}
            if model.startswith("finetune"):
                meta["best_epoch"] = 0 if (fold == 0 or model.endswith("gmu")) else 4
                moved = 0.002 if model.endswith("gmu") else 0.3
                (run / "permutation.json").write_text(json.dumps({
                    "task": "regression", "threshold": 0.01,
                    "columns": {"category": {"metric_change": -0.05 if moved > 0.1 else 0.0,
                                             "prediction_change": moved}}}))
            write_metrics(run / "metrics.json", meta)


def test_verdict_words_follow_the_interval():
    assert verdict_word(0.1, 0.05, 0.2, "r2") == "better"
    assert verdict_word(-0.1, -0.2, -0.05, "r2") == "worse"
    assert verdict_word(-0.1, -0.2, -0.05, "mae") == "better"  # lower error
    assert verdict_word(0.01, -0.02, 0.04, "r2") == "no clear difference"
    assert verdict_word(np.nan, np.nan, np.nan, "r2") == ""


def test_selection_cell_counts_kept_starts_and_names_later_epochs():
    run = lambda epoch: type("R", (), {"meta": {"best_epoch": epoch}})()  # noqa: E731
    assert selection_cell([run(0), run(0)]) == "start kept 2/2"
    assert selection_cell([run(0), run(7), run(3)]) == "start kept 1/3; epochs 3, 7"
    assert selection_cell([type("R", (), {"meta": {}})()]) == ""


def test_report_has_both_baselines_selection_permutation_and_leaves_inert_fusions_unranked(
        tmp_path):
    fabricate(tmp_path / "results")
    table = write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "out"),
                                       n_bootstrap=200, figures=False))
    tsv = pd.read_csv(tmp_path / "out" / "comparison.tsv", sep="\t", keep_default_na=False)
    rows = tsv.set_index("model")
    assert set(rows.index) == {GOOD, INERT, "rf", "linear"}
    assert rows.loc[INERT, "rank"] == "" and rows.loc[INERT, "metadata_inert"] == "True"
    assert table["model"].iloc[-1] == INERT  # after the ranked rows, though its R² is best
    assert sorted(int(r) for r in tsv["rank"] if r != "") == [1, 2, 3]
    assert rows.loc[GOOD, "vs_rf"] == "better"
    assert rows.loc[GOOD, "vs_linear"] in ("better", "worse", "no clear difference")
    assert rows.loc["linear", "vs_rf"] == "better" and rows.loc["linear", "vs_linear"] == ""
    assert rows.loc["rf", "vs_rf"] == "" and rows.loc["rf", "selection"] == ""
    assert rows.loc[GOOD, "selection"] == "start kept 1/2; epoch 4"
    assert rows.loc[GOOD, "metadata_permutation"].startswith("predictions move 0.300 SD")
    assert "r2_diff_vs_linear" in tsv.columns
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "**linear (CLR)** (a baseline) beats RF" in summary
    assert "; vs linear: " in summary
    ranked, inert = summary.split("Metadata inert, not ranked")
    assert "**gmu**" not in ranked.split("| rank |")[0] and "- metadata inert: **gmu**" in inert
    assert "| rank | model | runs | R² | MAE | RMSE | vs forest | vs linear | selection (epoch) " \
           "| metadata permutation |" in summary
    assert "metadata inert: predictions move 0.002 SD" in summary


def test_without_linear_runs_the_report_is_as_before(tmp_path):
    fabricate(tmp_path / "results")
    import shutil

    shutil.rmtree(tmp_path / "results" / "linear")
    table = write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "out"),
                                       n_bootstrap=50, figures=False))
    assert "vs_linear" not in table and "r2_diff_vs_linear" not in table
    assert "vs linear" not in (tmp_path / "out" / "summary.md").read_text()


def test_models_with_identical_predictions_share_a_rank(tmp_path):
    fabricate(tmp_path / "results")
    import shutil

    twin = tmp_path / "results" / "finetune" / "categorical-fusion~perceiver"
    shutil.copytree(tmp_path / "results" / "finetune" / GOOD, twin)
    table = write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "out"),
                                       n_bootstrap=50, figures=False))
    ranks = table.set_index("model")["rank"]
    assert ranks[GOOD] == ranks["categorical-fusion~perceiver"] == 1 and ranks["linear"] == 3
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Same model, shared rank: **concat** = **perceiver**" in summary or \
        "Same model, shared rank: **perceiver** = **concat**" in summary
