"""Categorical metadata columns as integer ids: index 1..K per category, 0 for unseen or missing."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from aam.data.metadata import is_missing as _is_missing
from aam.errors import InputError, first_items

log = logging.getLogger(__name__)

CategoryVocab = dict[str, dict[str, int]]


def is_missing(values: pd.Series) -> np.ndarray:
    """bool [N]: NA, empty or NA-like entries (the rule of :func:`aam.data.metadata.is_missing`)."""
    return _is_missing(values).fillna(True).to_numpy(dtype=bool)


def metadata_column(
    metadata: pd.DataFrame, column: str, sample_ids: Sequence[str], source: str = "metadata.tsv"
) -> pd.Series:
    """The values of ``column`` for ``sample_ids`` (in that order), as stripped strings or NA.

    Raises
    ------
    InputError
        If the column is absent (the available columns are listed) or samples have no row.
    """
    if column not in metadata.columns:
        raise InputError(
            f"Column '{column}' is not in {source}; available columns: "
            f"{first_items(sorted(map(str, metadata.columns)), n=20)}. Fix the column name."
        )
    ids = [str(s) for s in sample_ids]
    missing = pd.Index(ids).difference(metadata.index.astype(str))
    if len(missing):
        raise InputError(
            f"{first_items(sorted(missing))} samples have no row in {source}. "
            "Re-run aam prepare or fix the sample list."
        )
    values = metadata[column].set_axis(metadata.index.astype(str))
    return values.loc[ids].astype("string").str.strip()


def fit_categories(metadata: pd.DataFrame, columns: Sequence[str]) -> CategoryVocab:
    """Build the category vocabulary of ``columns`` from the (training) metadata rows.

    Parameters
    ----------
    metadata : pd.DataFrame
        Rows of the training samples, index sample ID, string values.
    columns : sequence of str
        Categorical columns, in the order the model sees them.

    Returns
    -------
    vocab : CategoryVocab
        ``{column: {category: index}}`` with categories sorted and indexed 1..K; 0 is reserved
        for unseen or missing values, so a column's cardinality is ``K + 1``. Plain Python
        types only (it is stored in checkpoints).

    Raises
    ------
    InputError
        If a column is not in the metadata.
    """
    vocab: CategoryVocab = {}
    for column in columns:
        values = metadata_column(metadata, column, metadata.index.astype(str))
        present = values[~is_missing(values)]
        categories = sorted(set(present.tolist()))
        if not categories:
            log.warning("categorical column '%s' has no non-missing values", column)
        vocab[str(column)] = {str(c): i + 1 for i, c in enumerate(categories)}
    return vocab


def encode_categories(
    metadata: pd.DataFrame, vocab: CategoryVocab, sample_ids: Sequence[str]
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Encode the vocabulary's columns for ``sample_ids``.

    Parameters
    ----------
    metadata : pd.DataFrame
        Index sample ID, string values; must hold every column of ``vocab``.
    vocab : CategoryVocab
        From :func:`fit_categories` (or a checkpoint).
    sample_ids : sequence of str, length N

    Returns
    -------
    cat_ids : np.ndarray int64 [N, C]
        Column order = ``vocab`` order; 0 for missing or unseen values.
    unseen : dict[str, list[str]]
        Per column, the sorted distinct values not in the vocabulary (mapped to 0); empty lists
        are left out. Callers log these.

    Raises
    ------
    InputError
        If a column or a sample is not in the metadata.
    """
    columns = list(vocab)
    cat_ids = np.zeros((len(sample_ids), len(columns)), dtype=np.int64)
    unseen: dict[str, list[str]] = {}
    for j, column in enumerate(columns):
        values = metadata_column(metadata, column, sample_ids)
        missing = is_missing(values)
        mapped = values.map(vocab[column]).astype("Int64").fillna(0).to_numpy(dtype=np.int64)
        mapped[missing] = 0
        new = sorted(set(values[(mapped == 0) & ~missing].tolist()))
        if new:
            unseen[column] = new
            log.warning("column '%s': %s unseen categories mapped to 0", column, first_items(new))
        cat_ids[:, j] = mapped
    return cat_ids, unseen


def cardinalities(vocab: CategoryVocab, columns: Sequence[str] | None = None) -> tuple[int, ...]:
    """Embedding table sizes (``K + 1``, index 0 reserved) for ``columns`` (default: all)."""
    columns = list(vocab) if columns is None else list(columns)
    unknown = [c for c in columns if c not in vocab]
    if unknown:
        raise InputError(
            f"Categorical columns {first_items(unknown)} are not in the category vocabulary "
            f"(known: {', '.join(vocab) or 'none'}). Use the columns the model was trained with."
        )
    return tuple(len(vocab[c]) + 1 for c in columns)
