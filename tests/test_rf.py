"""Random-forest baseline: same samples as the split, relative-abundance features, outputs."""

import json

import biom
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from aam.baselines.rf import RFConfig, fit_random_forest, relative_abundance
from aam.cli.rf_baseline import main
from aam.data.prepared import PreparedData
from aam.errors import InputError
from aam.predictions import read_predictions

SEQS = ["ACGT" * 10 + "ACGT"[i % 4] * (i + 1) for i in range(12)]


def tiny_data(n: int = 24, task: str = "regression") -> PreparedData:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, size=(n, len(SEQS))).astype(float)
    counts[:, 0] = np.arange(n) * 5  # the target follows ASV 0
    ids = [f"S{i:02d}" for i in range(n)]
    share = counts[:, 0] / counts.sum(axis=1)
    metadata = pd.DataFrame({"ph": [f"{v:.4f}" for v in 10 * share],
                             "state": np.where(share > np.median(share), "high", "low")},
                            index=pd.Index(ids, name="sample_id"))
    return PreparedData(ids, SEQS, sp.csr_matrix(counts), metadata, None,
                        {"task": task, "target_column": "ph"})


def test_relative_abundance_rows_sum_to_one():
    rel = relative_abundance(sp.csr_matrix([[1, 3], [0, 0], [2, 2]]))
    assert rel.toarray().tolist() == [[0.25, 0.75], [0.0, 0.0], [0.5, 0.5]]


def test_rf_uses_exactly_the_split():
    data = tiny_data()
    train, test = data.sample_ids[:16], data.sample_ids[16:]
    result = fit_random_forest(data, train, test, RFConfig("ph", n_estimators=20, n_jobs=1))
    assert result.predictions["sample_id"].tolist() == data.sample_ids[16:]
    assert result.n_train == 16
    expected = pd.to_numeric(data.metadata.loc[data.sample_ids[16:], "ph"]).to_numpy()
    np.testing.assert_allclose(result.predictions["actual"], expected)
    assert result.importances["sequence"].iloc[0] == SEQS[0]  # the informative ASV ranks first


@pytest.mark.parametrize("which", ["train", "eval"])
def test_rf_refuses_listed_samples_that_are_not_in_the_table(which):
    """Unknown IDs are an error (as in aam train), never skipped with a warning."""
    data = tiny_data()
    train, test = data.sample_ids[:16], data.sample_ids[16:]
    if which == "train":
        train = train + ["GHOST1"]
    else:
        test = test + ["GHOST1"]
    with pytest.raises(InputError, match=r"1 samples in the (train|evaluation) list are not in "
                                         r"the prepared table \(first 1: GHOST1\)"):
        fit_random_forest(data, train, test, RFConfig("ph", n_estimators=5, n_jobs=1))


def test_rf_rejects_a_non_numeric_regression_target():
    data = tiny_data()
    data.metadata.loc["S03", "ph"] = "n/a?"
    with pytest.raises(InputError, match=r"must be numeric.*S03='n/a\?'"):
        fit_random_forest(data, data.sample_ids[:10], data.sample_ids[10:], RFConfig("ph"))


def test_rf_classification_gives_probabilities_per_class():
    data = tiny_data(task="classification")
    result = fit_random_forest(data, data.sample_ids[::2], data.sample_ids[1::2],
                               RFConfig("state", n_estimators=30, n_jobs=1))
    assert result.classes == ["high", "low"]
    proba = result.predictions[["prob_high", "prob_low"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(result.predictions["prediction"]) <= {"high", "low"}


def write_prepared(data: PreparedData, folder):
    folder.mkdir()
    table = biom.Table(data.counts.T.tocsr(), data.sequences, data.sample_ids)
    with biom.util.biom_open(str(folder / "table.biom"), "w") as handle:
        table.to_hdf5(handle, "test")
    data.metadata.to_csv(folder / "metadata.tsv", sep="\t")
    (folder / "prepare.json").write_text(json.dumps(data.info))


@pytest.mark.parametrize("task,column,figure", [("regression", "ph", "predicted_vs_actual.svg"),
                                                ("classification", "state",
                                                 "confusion_matrix.svg")])
def test_cli_writes_predictions_metrics_figure_and_importances(tmp_path, task, column, figure):
    data = tiny_data(task=task)
    write_prepared(data, tmp_path / "prepared")
    (tmp_path / "train.txt").write_text("\n".join(data.sample_ids[:16]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(data.sample_ids[16:]) + "\n")
    taxonomy = tmp_path / "taxonomy.tsv"
    taxonomy.write_text(f"Feature ID\tTaxon\n{SEQS[0]}\tk__Bacteria; g__Informative\n")
    out = tmp_path / "rf" / "fold~0" / "seed~1" / "predictions.tsv"
    code = main(["--data-dir", str(tmp_path / "prepared"), "--metadata-column", column,
                 "--train-samples", str(tmp_path / "train.txt"), "--val-samples",
                 str(tmp_path / "test.txt"), "--output", str(out), "--n-estimators", "20",
                 "--seed", "1", "--fold", "0", "--n-jobs", "1", "--taxonomy",
                 str(taxonomy)])
    assert code == 0
    assert read_predictions(out)["sample_id"].tolist() == data.sample_ids[16:]
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert (metrics["task"], metrics["n"], metrics["seed"], metrics["fold"]) == (task, 8, 1, 0)
    assert (out.parent / figure).stat().st_size > 1000
    assert (out.parent / figure).with_suffix(".png").stat().st_size > 1000
    importances = pd.read_csv(out.parent / "feature_importance.tsv", sep="\t")
    assert importances.set_index("sequence").loc[SEQS[0], "taxon"] == "k__Bacteria; g__Informative"


def test_cli_reports_a_missing_sample_list_in_one_line(tmp_path, capsys):
    write_prepared(tiny_data(), tmp_path / "prepared")
    code = main(["--data-dir", str(tmp_path / "prepared"), "--metadata-column", "ph",
                 "--train-samples", str(tmp_path / "nope.txt"), "--val-samples", "x",
                 "--output", str(tmp_path / "p.tsv")])
    assert code == 2
    assert "sample list not found" in capsys.readouterr().err
