"""Category vocabularies: sorted indices from 1, 0 for missing or unseen, clear column errors."""

import numpy as np
import pandas as pd
import pytest

from aam.data.categories import cardinalities, encode_categories, fit_categories
from aam.errors import InputError


def _meta(rows):
    frame = pd.DataFrame(rows, columns=["sample_id", "sex", "site"], dtype=str)
    return frame.set_index("sample_id")


@pytest.fixture
def train():
    return _meta([["S1", "male", "gut"], ["S2", "female", "gut"], ["S3", "", "skin"],
                  ["S4", "female", "Missing: not collected"]])


def test_vocab_is_sorted_from_one_and_skips_missing(train):
    vocab = fit_categories(train, ["sex", "site"])
    assert vocab == {"sex": {"female": 1, "male": 2}, "site": {"gut": 1, "skin": 2}}
    assert cardinalities(vocab, ["site", "sex"]) == (3, 3)


def test_encode_maps_missing_and_unseen_to_zero(train):
    vocab = fit_categories(train, ["sex", "site"])
    test = _meta([["T1", "male", "oral"], ["T2", "NA", "skin"], ["T3", "female", "gut"]])
    cat_ids, unseen = encode_categories(test, vocab, ["T3", "T1", "T2"])
    assert cat_ids.dtype == np.int64
    np.testing.assert_array_equal(cat_ids, [[1, 1], [2, 0], [0, 2]])
    assert unseen == {"site": ["oral"]}


def test_missing_column_lists_available_columns(train):
    expected = r"Column 'age' is not in metadata.tsv; available columns: 2 .*sex, site"
    with pytest.raises(InputError, match=expected):
        fit_categories(train, ["age"])


def test_samples_without_metadata_are_named(train):
    vocab = fit_categories(train, ["sex"])
    with pytest.raises(InputError, match=r"1 \(first 1: X9\) samples have no row in metadata.tsv"):
        encode_categories(train, vocab, ["S1", "X9"])


def test_cardinalities_of_an_unknown_column_fail(train):
    vocab = fit_categories(train, ["sex"])
    with pytest.raises(InputError, match="not in the category vocabulary"):
        cardinalities(vocab, ["site"])
