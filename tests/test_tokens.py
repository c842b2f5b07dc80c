"""Tokenizer: values, right padding, truncation, non-ACGT handling."""

import numpy as np
import pytest

from aam.data.tokens import A, C, G, MASK, PAD, T, VOCAB_SIZE, longest, tokenize
from aam.errors import InputError


def test_token_values_are_fixed():
    assert (PAD, A, C, G, T, MASK, VOCAB_SIZE) == (0, 1, 2, 3, 4, 5, 6)


def test_tokenize_pads_right_and_truncates():
    tokens = tokenize(["ACGT", "GGA", "TTTTTTT"], max_bp=5)
    assert tokens.dtype == np.uint8
    np.testing.assert_array_equal(
        tokens, [[1, 2, 3, 4, 0], [3, 3, 1, 0, 0], [4, 4, 4, 4, 4]]
    )


def test_lowercase_is_accepted_and_other_characters_become_pad():
    tokens = tokenize(["acgt", "ANC-RT"], max_bp=6)
    np.testing.assert_array_equal(tokens, [[1, 2, 3, 4, 0, 0], [1, PAD, 2, PAD, PAD, 4]])


def test_tokenize_matches_a_per_character_reference_on_random_sequences():
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), rng.integers(1, 40))) for _ in range(50)]
    expected = np.zeros((50, 30), dtype=np.uint8)
    for i, s in enumerate(seqs):
        for j, ch in enumerate(s[:30]):
            expected[i, j] = "ACGT".index(ch) + 1
    np.testing.assert_array_equal(tokenize(seqs, 30), expected)


def test_empty_input_and_longest():
    assert tokenize([], 4).shape == (0, 4)
    assert longest(["AC", "ACGTA", ""]) == 5
    assert longest([]) == 0


def test_max_bp_must_be_positive():
    with pytest.raises(InputError, match="max_bp must be >= 1"):
        tokenize(["ACGT"], 0)
