"""QIIME 2-readable outputs, checked against the QIIME 2 metadata format rules (no QIIME 2 here):
predictions.qiime2.tsv beside every predictions.tsv, attributions.tsv (tests/test_explain.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from aam.errors import InputError
from aam.predictions import read_predictions, write_predictions
from aam.qiime2_metadata import qiime2_path, write_qiime2_metadata
from qiime2_rules import check_qiime2_metadata


def test_regression_predictions_get_a_qiime2_twin(tmp_path):
    path = tmp_path / "predictions.tsv"
    write_predictions(path, ["S1", "2538.1002622", "s 3"], [1.5, 2.0, 3.25], actual=[1, None, 3])
    twin = qiime2_path(path)
    assert twin.name == "predictions.qiime2.tsv"
    ids = check_qiime2_metadata(twin, kind="sample")
    assert ids == ["S1", "2538.1002622", "s 3"]  # IDs kept as text, never parsed as numbers
    lines = twin.read_text().splitlines()
    assert lines[0].split("\t") == ["sample-id", "prediction", "actual"]
    assert lines[1].split("\t") == ["#q2:types", "numeric", "numeric"]
    # the contract file is unchanged: sample_id first, read back by our own reader
    assert read_predictions(path)["sample_id"].tolist() == ["S1", "2538.1002622", "s 3"]


def test_classification_labels_are_categorical(tmp_path):
    path = tmp_path / "predictions.tsv"
    write_predictions(path, ["a", "b"], ["1", "2"], actual=["1", "2"],
                      proba=[[0.9, 0.1], [0.2, 0.8]], classes=["1", "2"])
    twin = qiime2_path(path)
    check_qiime2_metadata(twin, kind="sample")
    header, types = twin.read_text().splitlines()[:2]
    assert header.split("\t") == ["sample-id", "prediction", "actual", "prob_1", "prob_2"]
    # numeric-looking class labels still parse as numbers; prob columns are numeric
    assert types.split("\t")[3:] == ["numeric", "numeric"]


def test_ids_qiime2_refuses_are_named(tmp_path):
    frame = pd.DataFrame({"sample_id": ["#x", "y"], "prediction": [1, 2]})
    with pytest.raises(InputError, match="starting with '#'.*'#x'"):
        write_qiime2_metadata(frame, tmp_path / "p.qiime2.tsv")
    assert not (tmp_path / "p.qiime2.tsv").exists()
    write_predictions(tmp_path / "predictions.tsv", ["#x", "y"], [1, 2])  # contract file still
    assert (tmp_path / "predictions.tsv").is_file()
    assert not (tmp_path / "predictions.qiime2.tsv").exists()


def test_rule_checker_rejects_what_qiime2_rejects(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sample_id\tx\nA\t1\n")
    with pytest.raises(AssertionError, match="not a QIIME 2 sample ID header"):
        check_qiime2_metadata(bad, kind="sample")
    bad.write_text("sample-id\tx\nA\t1\nA\t2\n")
    with pytest.raises(AssertionError, match="duplicate IDs"):
        check_qiime2_metadata(bad, kind="sample")
    bad.write_text("feature-id\tid\nA\t1\n")
    with pytest.raises(AssertionError, match="ID header"):
        check_qiime2_metadata(bad, kind="feature")
