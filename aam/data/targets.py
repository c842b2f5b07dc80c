"""Targets: parse regression and classification columns; re-exports the target transforms.

The transform registry lives in :mod:`aam.data.target_transforms`; it is importable from here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from aam.data.categories import is_missing, metadata_column
from aam.data.target_transforms import (  # noqa: F401  (public API of this module)
    MIN_GROUP_SIZE,
    TRANSFORMS,
    TargetTransform,
    build_transform,
    register_transform,
    transform_from_dict,
)
from aam.errors import InputError, first_items


def _pairs(ids, values, n: int = 5) -> str:
    shown = ", ".join(f"{i}={v!r}" for i, v in zip(ids[:n], values[:n]))
    return shown + (", ..." if len(ids) > n else "")


def _check_present(values: pd.Series, column: str, source: str) -> None:
    missing = is_missing(values)
    if missing.any():
        raise InputError(
            f"Target '{column}' is missing for {first_items(values.index[missing])} samples in "
            f"{source}. aam prepare drops samples without a target: re-run it, or remove these "
            "samples from the sample list."
        )


def parse_regression_target(
    metadata: pd.DataFrame, column: str, sample_ids: Sequence[str], source: str = "metadata.tsv"
) -> np.ndarray:
    """Numeric target values of ``sample_ids`` for regression.

    Returns
    -------
    values : np.ndarray float64 [N]

    Raises
    ------
    InputError
        If the column or a sample is absent, values are missing, cannot be parsed as numbers
        (the first bad samples and values are named), or are infinite.
    """
    raw = metadata_column(metadata, column, sample_ids, source)
    _check_present(raw, column, source)
    parsed = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(parsed)
    if bad.any():
        raise InputError(
            f"Target '{column}' must be numeric for regression; {int(bad.sum())} values could "
            f"not be parsed ({_pairs(list(raw.index[bad]), list(raw[bad]))}) in {source}. "
            "Clean the column or use --task classification."
        )
    inf = np.isinf(parsed)
    if inf.any():
        raise InputError(
            f"Target '{column}' has {int(inf.sum())} infinite values "
            f"({_pairs(list(raw.index[inf]), list(raw[inf]))}) in {source}. "
            "Replace or remove them."
        )
    return parsed


def fit_classes(
    metadata: pd.DataFrame, column: str, sample_ids: Sequence[str], source: str = "metadata.tsv"
) -> list[str]:
    """Sorted class labels of ``column`` among the (training) ``sample_ids``.

    Raises
    ------
    InputError
        If values are missing or fewer than 2 classes occur.
    """
    raw = metadata_column(metadata, column, sample_ids, source)
    _check_present(raw, column, source)
    classes = sorted(set(raw.tolist()))
    if len(classes) < 2:
        raise InputError(
            f"Target '{column}' has a single class ({classes[0]!r}) in the training samples; "
            "classification needs at least 2. Choose another column or split."
        )
    return classes


def encode_classes(
    metadata: pd.DataFrame,
    column: str,
    sample_ids: Sequence[str],
    classes: Sequence[str],
    allow_unknown: bool = False,
    source: str = "metadata.tsv",
) -> np.ndarray:
    """Class index (position in ``classes``) of each sample.

    Returns
    -------
    labels : np.ndarray int64 [N]
        -1 for missing or unknown labels when ``allow_unknown`` (e.g. predicting new samples).

    Raises
    ------
    InputError
        If a label is missing or not in ``classes`` and ``allow_unknown`` is False.
    """
    raw = metadata_column(metadata, column, sample_ids, source)
    if not allow_unknown:
        _check_present(raw, column, source)
    lookup = {str(c): i for i, c in enumerate(classes)}
    labels = raw.map(lookup).astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    unknown = (labels < 0) & ~is_missing(raw)
    if unknown.any() and not allow_unknown:
        raise InputError(
            f"Target '{column}' has {int(unknown.sum())} labels not seen in training "
            f"({_pairs(list(raw.index[unknown]), list(raw[unknown]))}) in {source}; known "
            f"classes: {', '.join(map(str, classes))}. Fix the labels or the split."
        )
    return labels


def group_keys(
    metadata: pd.DataFrame, columns: Sequence[str], sample_ids: Sequence[str],
    source: str = "metadata.tsv",
) -> list[tuple[str, ...]]:
    """Per sample, the tuple of its ``columns`` values (missing -> ``""``): normalize_by groups."""
    parts = []
    for column in columns:
        values = metadata_column(metadata, column, sample_ids, source)
        parts.append(values.mask(is_missing(values), "").astype(str).tolist())
    return list(zip(*parts)) if parts else [() for _ in sample_ids]
