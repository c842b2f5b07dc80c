"""Linear baseline (ridge / L2 logistic on CLR abundances): the penalty's CV, coefficients as
importances, categorical one-hot features shared with the forest, the sample-list flags, and the
equivalence with the real-data benchmark's linear row."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from aam.baselines.features import category_features, clr_abundance
from aam.baselines.linear import LinearConfig, cv_splits, fit_linear_baseline
from aam.baselines.rf import RFConfig, fit_random_forest
from aam.cli.linear import main
from aam.cli.rf_baseline import main as rf_main
from aam.errors import InputError
from aam.predictions import read_predictions
from conftest import REPO, shared_dataset
from test_rf import SEQS, tiny_data, write_prepared


def with_subjects(data, per_subject: int = 2):
    data.metadata["subject"] = [f"P{i // per_subject}" for i in range(len(data.sample_ids))]
    data.metadata["site"] = ["a", "b", "c"] * (len(data.sample_ids) // 3)
    return data


def test_clr_rows_sum_to_zero_and_use_the_pseudocount():
    clr = clr_abundance(np.array([[0.0, 1.5, 3.5]]), pseudocount=0.5)
    np.testing.assert_allclose(clr, np.log([[0.5, 2, 4]]) - np.log([0.5, 2, 4]).mean())
    assert abs(clr.sum()) < 1e-12


def test_category_features_are_fitted_on_training_samples():
    meta = pd.DataFrame({"site": ["a", "b", "a", "z", ""]}, index=list("VWXYZ"))
    x_train, x_eval, names = category_features(meta, ["site"], list("VWX"), list("YZV"))
    assert names == ["site=a", "site=b"]
    assert x_train.tolist() == [[1, 0], [0, 1], [1, 0]]
    assert x_eval.tolist() == [[0, 0], [0, 0], [1, 0]]  # unseen and missing: zeros


def test_grouped_cv_keeps_each_subject_in_one_fold():
    groups = np.repeat(np.arange(7), 3)
    splits = cv_splits(len(groups), "regression", groups=groups)
    assert len(splits) == 5
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
    with pytest.raises(InputError, match="one subject"):
        cv_splits(4, "regression", groups=np.zeros(4))


def test_ridge_finds_the_informative_asv_and_reports_its_penalty():
    data = with_subjects(tiny_data(n=30))
    cfg = LinearConfig("ph", group_by="subject")
    result = fit_linear_baseline(data, data.sample_ids[:24], data.sample_ids[24:], cfg)
    assert result.predictions["sample_id"].tolist() == data.sample_ids[24:]
    assert result.importances["sequence"].iloc[0] == SEQS[0]
    assert result.importances["coefficient"].iloc[0] > 0
    assert result.details["penalty_alpha"] > 0 and result.details["cv_folds"] == 5


def test_logistic_gives_probabilities_and_one_hot_categories_in_both_baselines():
    data = with_subjects(tiny_data(n=30, task="classification"))
    train, test = data.sample_ids[::2], data.sample_ids[1::2]
    result = fit_linear_baseline(data, train, test,
                                 LinearConfig("state", categorical_columns=("site",)))
    proba = result.predictions[["prob_high", "prob_low"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(result.category_importance) == {"site=a", "site=b", "site=c"}
    assert "penalty_C" in result.details
    forest = fit_random_forest(data, train, test, RFConfig("state", n_estimators=10, n_jobs=1,
                                                           categorical_columns=("site",)))
    assert set(forest.category_importance) == {"site=a", "site=b", "site=c"}
    assert len(forest.importances) == len(SEQS)  # the ASV table holds ASVs only


def _lists(tmp_path, data, sizes=(16, 4)):
    names = {"train": data.sample_ids[:sizes[0]],
             "val": data.sample_ids[sizes[0]:sizes[0] + sizes[1]],
             "test": data.sample_ids[sizes[0] + sizes[1]:]}
    for name, ids in names.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return {name: str(tmp_path / f"{name}.txt") for name in names}


@pytest.mark.parametrize("command", ["linear", "rf"])
def test_cli_trains_on_every_train_list_and_predicts_the_test_list(tmp_path, command):
    data = with_subjects(tiny_data(n=30))
    write_prepared(data, tmp_path / "prepared")
    lists = _lists(tmp_path, data)
    out = tmp_path / command / "fold~0" / "seed~0" / "predictions.tsv"
    argv = ["--data-dir", str(tmp_path / "prepared"), "--metadata-column", "ph",
            "--train-samples", lists["train"], lists["val"], "--test-samples", lists["test"],
            "--output", str(out), "--categorical-columns", "site", "--fold", "0"]
    extra = ["--group-by", "subject"] if command == "linear" else ["--n-estimators", "10",
                                                                   "--n-jobs", "1"]
    assert (main if command == "linear" else rf_main)(argv + extra) == 0
    assert read_predictions(out)["sample_id"].tolist() == data.sample_ids[20:]
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["n_train"] == 20 and metrics["model"] == command
    assert metrics["config"]["categorical_columns"] == ["site"]
    assert set(metrics["category_importance"]) == {"site=a", "site=b", "site=c"}
    importances = pd.read_csv(out.parent / "feature_importance.tsv", sep="\t")
    assert "coefficient" in importances or command == "rf"


def test_cli_refuses_a_test_list_that_overlaps_training(tmp_path, capsys):
    data = with_subjects(tiny_data(n=30))
    write_prepared(data, tmp_path / "prepared")
    lists = _lists(tmp_path, data)
    code = main(["--data-dir", str(tmp_path / "prepared"), "--metadata-column", "ph",
                 "--train-samples", lists["train"], lists["val"], "--test-samples",
                 lists["val"], "--output", str(tmp_path / "out" / "predictions.tsv")])
    assert code == 2
    assert "samples are in both" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.tsv").exists()


def test_linear_baseline_equals_the_benchmark_linear_row_on_a_sleep_apnea_age_fold(tmp_path):
    """`aam linear-baseline` on fold 0 of the benchmark's sleep-apnea age study gives the
    predictions of the benchmark's own linear fit of that fold (within 1e-6)."""
    data_root = shared_dataset("sleep-apnea").parent
    sys.path.insert(0, str(REPO / "benchmarks"))
    from aam_science import runner
    from aam_science.settings import PRESETS, STUDIES

    from aam.data.prepared import load_prepared

    study = STUDIES["sleep-apnea-age"]
    prepared = runner.prepare_study(study, data_root, tmp_path / "prepared", None)
    data = load_prepared(prepared)
    folds, subjects = runner.outer_folds(data, study, PRESETS["cpu"])
    train, test = folds[0]
    index = {s: i for i, s in enumerate(data.sample_ids)}
    actual = data.metadata.loc[data.sample_ids, study.target].astype(float).to_numpy()
    expected = runner._linear(runner._clr(data), np.array([index[s] for s in train]),
                              np.array([index[s] for s in test]), actual, subjects, study.task)
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")
    out = tmp_path / "linear" / "predictions.tsv"
    assert main(["--data-dir", str(prepared), "--metadata-column", study.target,
                 "--train-samples", str(tmp_path / "train.txt"), "--test-samples",
                 str(tmp_path / "test.txt"), "--group-by", study.group_by,
                 "--output", str(out)]) == 0
    got = read_predictions(out).set_index("sample_id").loc[test, "prediction"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
