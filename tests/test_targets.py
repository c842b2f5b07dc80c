"""Targets: parsing errors, class encoding, and exact round trips of every registered transform."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from aam.data.targets import (
    MIN_GROUP_SIZE,
    TRANSFORMS,
    build_transform,
    encode_classes,
    fit_classes,
    group_keys,
    parse_regression_target,
    transform_from_dict,
)
from aam.errors import InputError


def _meta(**columns):
    ids = [f"S{i:02d}" for i in range(len(next(iter(columns.values()))))]
    return pd.DataFrame(columns, index=pd.Index(ids, name="sample_id"), dtype=str)


def test_regression_target_parses_in_sample_order():
    meta = _meta(ph=["7.1", "6", " 5.5 "])
    np.testing.assert_array_equal(parse_regression_target(meta, "ph", ["S02", "S00"]), [5.5, 7.1])


def test_non_numeric_target_names_samples_and_values():
    meta = _meta(ph=["7", "abc", "7", "7,1", "8"])
    with pytest.raises(InputError, match=r"Target 'ph' must be numeric for regression; 2 values "
                       r"could not be parsed \(S01='abc', S03='7,1'\).*--task classification"):
        parse_regression_target(meta, "ph", list(meta.index))


def test_missing_and_infinite_targets_are_rejected():
    meta = _meta(ph=["7", "", "n/a", "inf"])
    with pytest.raises(InputError, match=r"Target 'ph' is missing for 2 \(first 2: S01, S02\)"):
        parse_regression_target(meta, "ph", list(meta.index))
    with pytest.raises(InputError, match=r"Target 'ph' has 1 infinite values \(S03='inf'\)"):
        parse_regression_target(meta, "ph", ["S00", "S03"])


def test_classes_are_sorted_and_encoded():
    meta = _meta(ibd=["Crohns", "Control", "Crohns", "UC"])
    classes = fit_classes(meta, "ibd", ["S00", "S01", "S02"])
    assert classes == ["Control", "Crohns"]
    labels = encode_classes(meta, "ibd", ["S02", "S01"], classes)
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0]


def test_single_class_and_unknown_class_errors():
    meta = _meta(ibd=["x", "x", "y"])
    with pytest.raises(InputError, match=r"Target 'ibd' has a single class \('x'\).*at least 2"):
        fit_classes(meta, "ibd", ["S00", "S01"])
    with pytest.raises(InputError, match=r"1 labels not seen in training \(S02='y'\)"):
        encode_classes(meta, "ibd", ["S00", "S02"], ["x", "z"])
    labels = encode_classes(meta, "ibd", ["S00", "S02"], ["x", "z"], allow_unknown=True)
    assert labels.tolist() == [0, -1]


def test_group_keys_are_tuples_of_column_values():
    meta = _meta(sex=["m", "f", ""], site=["gut", "gut", "skin"])
    assert group_keys(meta, ["sex", "site"], ["S01", "S02"]) == [("f", "gut"), ("", "skin")]


def test_unknown_transform_lists_choices():
    with pytest.raises(InputError, match="Unknown target_transform 'zz'. Choose one of: "
                       "log-minmax, log-zscore, minmax, none, zscore, zscore-category."):
        build_transform("zz")


VALUES = np.array([0.5, 3.0, 2.0, 10.0, 7.0, 7.5, 1.0, 40.0, 0.0, 6.0])
GROUPS = [("a",)] * 4 + [("b",)] * 4 + [("tiny",)] * 2


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_round_trips_through_a_checkpoint(name):
    transform = build_transform(name, normalize_by=("site",)).fit(VALUES, GROUPS)
    scaled = transform.transform(VALUES, GROUPS)
    state = transform.to_dict()
    json.dumps(state)  # plain Python only
    buffer = io.BytesIO()
    torch.save({"target_transform": state}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["target_transform"]
    restored = transform_from_dict(loaded)
    np.testing.assert_allclose(restored.transform(VALUES, GROUPS), scaled, rtol=0, atol=1e-12)
    np.testing.assert_allclose(restored.inverse(scaled, GROUPS), VALUES, rtol=1e-12, atol=1e-12)
    if name != "none":
        assert not np.allclose(scaled, VALUES)


@pytest.mark.parametrize("name", ["minmax", "zscore", "log-minmax", "log-zscore"])
def test_standardising_transforms_give_the_expected_scale(name):
    scaled = build_transform(name).fit(VALUES).transform(VALUES)
    if "minmax" in name:
        assert scaled.min() == pytest.approx(0) and scaled.max() == pytest.approx(1)
    else:
        assert scaled.mean() == pytest.approx(0, abs=1e-12) and scaled.std() == pytest.approx(1)


def test_constant_target_does_not_divide_by_zero():
    for name in ("minmax", "zscore"):
        transform = build_transform(name).fit(np.full(4, 3.0))
        np.testing.assert_array_equal(transform.transform([3.0, 4.0]), [0.0, 1.0])
        np.testing.assert_array_equal(transform.inverse([0.0, 1.0]), [3.0, 4.0])


def test_zscore_category_uses_group_stats_and_global_fallback():
    transform = build_transform("zscore-category", ("site",)).fit(VALUES, GROUPS)
    scaled = transform.transform(VALUES, GROUPS)
    assert MIN_GROUP_SIZE == 3
    for group in (("a",), ("b",)):
        rows = [i for i, g in enumerate(GROUPS) if g == group]
        assert scaled[rows].mean() == pytest.approx(0, abs=1e-12)
        assert scaled[rows].std() == pytest.approx(1)
    # the 2-sample group and an unseen group use the global mean and sd
    mean, sd = VALUES.mean(), VALUES.std()
    np.testing.assert_allclose(scaled[8:], (VALUES[8:] - mean) / sd)
    np.testing.assert_allclose(transform.transform([mean + sd], [("new",)]), [1.0])
    assert transform.group_index(GROUPS + [("new",)]).tolist() == [1] * 4 + [2] * 4 + [0] * 3


def test_zscore_category_with_zero_sd_group_falls_back():
    values = np.array([5.0, 5.0, 5.0, 1.0, 2.0, 3.0])
    groups = [("a",)] * 3 + [("b",)] * 3
    transform = build_transform("zscore-category", ("g",)).fit(values, groups)
    scaled = transform.transform(values, groups)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled[:3], (5.0 - values.mean()) / values.std())
    np.testing.assert_allclose(transform.inverse(scaled, groups), values)


def test_log_transforms_require_values_above_minus_one():
    with pytest.raises(InputError, match=r"log-zscore applies log1p and needs targets > -1; "
                       r"got 2 \(first 2: -1.0, -3.0\) values <= -1. Use zscore instead"):
        build_transform("log-zscore").fit([1.0, -1.0, -3.0])


def test_zscore_category_needs_normalize_by():
    with pytest.raises(InputError, match="zscore-category needs normalize_by"):
        build_transform("zscore-category")
