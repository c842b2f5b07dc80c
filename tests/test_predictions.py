"""The predictions.tsv / metrics.json contracts and multi-pass aggregation."""

import json

import numpy as np
import pytest

from aam.errors import InputError
from aam.predictions import (aggregate_passes, metrics_from_predictions, read_metrics,
                             read_predictions, write_metrics, write_predictions)


def test_aggregate_passes_gives_mean_and_population_std():
    mean, std = aggregate_passes([[1.0, 10.0], [3.0, 10.0]])
    assert mean.tolist() == [2.0, 10.0]
    assert std.tolist() == [1.0, 0.0]


def test_aggregate_passes_averages_class_probabilities():
    mean, std = aggregate_passes(np.array([[[0.2, 0.8]], [[0.6, 0.4]]]))  # [P=2, N=1, K=2]
    np.testing.assert_allclose(mean, [[0.4, 0.6]])
    np.testing.assert_allclose(std, [[0.2, 0.2]])


def test_regression_round_trip_keeps_ids_as_strings(tmp_path):
    path = tmp_path / "predictions.tsv"
    write_predictions(path, ["001", "S2"], [1.5, 2.25], actual=[1.0, 2.0], std=[0.1, 0.2],
                      n_passes=4)
    frame = read_predictions(path)
    assert list(frame.columns) == ["sample_id", "prediction", "actual", "std", "n_passes"]
    assert frame["sample_id"].tolist() == ["001", "S2"]
    assert frame["prediction"].tolist() == [1.5, 2.25]
    assert frame["n_passes"].tolist() == [4.0, 4.0]
    assert metrics_from_predictions(frame)["mae"] == pytest.approx(0.375)


def test_classification_round_trip_has_prob_columns(tmp_path):
    path = tmp_path / "predictions.tsv"
    write_predictions(path, ["a", "b"], ["yes", "no"], actual=["yes", "yes"],
                      proba=[[0.2, 0.8], [0.7, 0.3]], classes=["no", "yes"])
    frame = read_predictions(path)
    assert list(frame.columns) == ["sample_id", "prediction", "actual", "prob_no", "prob_yes"]
    assert frame["prediction"].tolist() == ["yes", "no"]
    out = metrics_from_predictions(frame)
    assert out["task"] == "classification" and out["n"] == 2
    assert out["accuracy"] == pytest.approx(0.5) and out["auc"] is None


def test_missing_actual_is_nan_and_metrics_refuse(tmp_path):
    path = tmp_path / "predictions.tsv"
    write_predictions(path, ["a"], [1.0])
    frame = read_predictions(path)
    assert np.isnan(frame["actual"].iloc[0])
    with pytest.raises(InputError, match="none of the 1 predictions has an actual value"):
        metrics_from_predictions(frame)


def test_non_numeric_prediction_names_the_sample(tmp_path):
    path = tmp_path / "predictions.tsv"
    path.write_text("sample_id\tprediction\tactual\nS1\t1.0\t2\nS2\toops\t3\n")
    with pytest.raises(InputError, match=r"'prediction' .* 1 non-numeric value\(s\) \(S2='oops'\)"):
        read_predictions(path)


def test_missing_columns_and_files_are_reported(tmp_path):
    path = tmp_path / "predictions.tsv"
    path.write_text("id\tvalue\nS1\t1\n")
    with pytest.raises(InputError, match="lacks column.*sample_id, prediction"):
        read_predictions(path)
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_predictions(tmp_path / "nope.tsv")


def test_metrics_json_turns_nan_into_null(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics(path, {"task": "regression", "r2": float("nan"), "mae": np.float32(0.5),
                         "n": np.int64(3)})
    assert json.loads(path.read_text()) == {"task": "regression", "r2": None, "mae": 0.5, "n": 3}
    assert read_metrics(path)["mae"] == 0.5
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(InputError, match="bad.json is not valid JSON"):
        read_metrics(tmp_path / "bad.json")
