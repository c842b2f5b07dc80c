"""Classification end to end: rf-baseline outputs + fabricated AAM runs -> aam compare."""

import numpy as np
import pandas as pd

from aam.baselines.rf import RFConfig, fit_random_forest, write_rf_outputs
from aam.predictions import read_predictions, write_predictions
from aam.reports.summary import CompareConfig, write_report
from test_rf import tiny_data


def test_rf_classification_runs_compare_with_a_sharper_model(tmp_path):
    data = tiny_data(n=40, task="classification")
    train, test = data.sample_ids[::2], data.sample_ids[1::2]
    result = fit_random_forest(data, train, test, RFConfig("state", n_estimators=20, n_jobs=1))
    rf_dir = tmp_path / "results" / "rf" / "fold~0" / "seed~0"
    write_rf_outputs(result, rf_dir / "predictions.tsv", fold=0)
    rf = read_predictions(rf_dir / "predictions.tsv")
    truth = (rf["actual"] == "low").to_numpy(float)
    p_low = np.clip(0.9 * truth + 0.05, 0, 1)  # a near-perfect "AAM" run on the same samples
    write_predictions(tmp_path / "results" / "finetune" / "categorical-fusion~gmu" / "fold~0" /
                      "seed~0" / "predictions.tsv", rf["sample_id"],
                      np.where(truth > 0, "low", "high"),
                      actual=rf["actual"], proba=np.column_stack([1 - p_low, p_low]),
                      classes=["high", "low"])
    out = tmp_path / "report"
    table = write_report(CompareConfig(str(tmp_path / "results"), str(out), n_bootstrap=200,
                                       png=False))
    assert table["model"].tolist() == ["categorical-fusion~gmu", "rf"]
    assert table.loc[0, "accuracy_mean"] == 1.0 and table.loc[0, "auc_mean"] == 1.0
    comparison = pd.read_csv(out / "comparison.tsv", sep="\t")
    assert {"balanced_accuracy_ci_low", "f1_macro_diff", "auc_ci_high"} <= set(comparison)
    assert "**gmu**" in (out / "summary.md").read_text()
    for name in ("roc", "confusion_matrix", "metric_auc"):
        assert (out / f"{name}.svg").stat().st_size > 1000


def test_figures_go_to_their_folder_and_are_named_by_one_list(tmp_path):
    """The workflow declares the figures folder: a classification run (metric_auc) and a metric
    with no values (skipped) never leave a declared file missing."""
    from aam.reports.summary import figure_names

    data = tiny_data(n=40, task="classification")
    train, test = data.sample_ids[::2], data.sample_ids[1::2]
    result = fit_random_forest(data, train, test, RFConfig("state", n_estimators=10, n_jobs=1))
    write_rf_outputs(result, tmp_path / "results" / "rf" / "fold~0" / "seed~0" /
                     "predictions.tsv", fold=0)
    figures = tmp_path / "figures"
    write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "report"),
                               n_bootstrap=100, png=False, figures_dir=str(figures)))
    drawn = {p.stem for p in figures.glob("*.svg")}
    assert "metric_auc" in drawn and drawn <= set(figure_names("classification"))
    assert not list((tmp_path / "report").glob("*.svg"))
