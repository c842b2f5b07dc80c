"""Sample metadata TSV (QIIME 2 / Qiita style): ID column, missing values, target checks."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from aam.data.sample_ids import clean_ids
from aam.errors import InputError, first_items

#: Accepted ID headers (as QIIME 2 accepts them), compared after lowercasing and removing
#: '#', spaces, '-' and '_': id, sample_id, sample-id, #SampleID, #Sample ID, sample name,
#: sample_name, feature-id, feature id, #OTU ID.
ID_HEADERS = ("id", "sampleid", "samplename", "featureid", "otuid")
ID_HEADER_EXAMPLES = ("sample_id, sample-id, #SampleID, #Sample ID, id, sampleid, sample_name, "
                      "feature-id")
_MISSING = {"", "na", "n/a", "nan", "none", "null", "missing", "not applicable",
            "not provided", "not collected"}


def _norm_header(name: str) -> str:
    return re.sub(r"[#\s\-_]", "", name).lower()


def is_missing(values: pd.Series) -> pd.Series:
    """Boolean mask of missing values: NaN, empty/NA-like strings, Qiita's 'Missing: ...'."""
    text = values.astype(str).str.strip().str.lower()
    return values.isna() | text.isin(_MISSING) | text.str.startswith("missing:")


def read_metadata(path: str | Path) -> pd.DataFrame:
    """Read a metadata TSV whose first column is the sample ID; every value stays a string.

    Leading ``#`` comment lines and QIIME 2 ``#q2:`` directive rows are skipped. Values are kept
    as written (use :func:`is_missing` to find missing ones).

    Returns
    -------
    pandas.DataFrame
        Index ``sample_id`` (str), one str column per metadata column, file row order.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        No recognised ID header in the first column, or duplicate sample IDs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    start = 0
    while start < len(lines) and (not lines[start].strip() or (
            lines[start].startswith("#") and not _is_id_header(lines[start]))):
        start += 1
    if start == len(lines) or not _is_id_header(lines[start]):
        first = lines[start].split("\t")[0] if start < len(lines) else "(empty file)"
        raise InputError(
            f"{path} has no sample ID column: its first column is {first!r}. Make the first "
            f"column the sample ID with one of these headers: {ID_HEADER_EXAMPLES}."
        )
    try:
        frame = pd.read_csv(io.StringIO("\n".join(lines[start:])), sep="\t", dtype=str,
                            keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, ValueError) as err:
        raise InputError(f"{path} is not a tab-separated table ({str(err).splitlines()[0]}; "
                         f"counting from the header on line {start + 1}). Give every row as many "
                         "tab-separated fields as the header.") from None
    id_col = frame.columns[0]
    frame[id_col] = frame[id_col].str.strip()
    frame = frame[(frame[id_col] != "") & ~frame[id_col].str.startswith("#")]
    frame[id_col] = clean_ids(frame[id_col], str(path))  # the one ID rule (aam.data.sample_ids)
    frame = frame.set_index(id_col)
    frame.index.name = "sample_id"
    return frame


def _is_id_header(line: str) -> bool:
    return _norm_header(line.split("\t")[0]) in ID_HEADERS


def check_columns(metadata: pd.DataFrame, columns, source: str, what: str = "column") -> None:
    """Raise InputError when any of ``columns`` is not a column of ``metadata``."""
    missing = [col for col in columns if col not in metadata.columns]
    if missing:
        available = ", ".join(metadata.columns[:30]) + (", ..." if metadata.shape[1] > 30 else "")
        raise InputError(f"{what} {', '.join(repr(c) for c in missing)} not found in {source}. "
                         f"Available columns: {available}.")


def column_labels(values: pd.Series, role: str, source: str) -> pd.Series:
    """A grouping column's values as stripped strings (e.g. the subject of each sample).

    Raises
    ------
    InputError
        When any sample has no value.
    """
    missing = values.index[is_missing(values)]
    if len(missing):
        raise InputError(f"{role} column {values.name!r} in {source} has no value for "
                         f"{first_items(missing)} samples. Fill it in or drop those samples.")
    return values.astype(str).str.strip()


def usable_target(metadata: pd.DataFrame, column: str, task: str, source: str) -> pd.Series:
    """Boolean mask over ``metadata`` rows: True where the target is present (and numeric).

    Parameters
    ----------
    metadata : DataFrame
        Rows of the samples to check (the table samples with metadata).
    column, task : str
        Target column and ``"regression"`` or ``"classification"``.

    Raises
    ------
    InputError
        Regression target with non-numeric or infinite values (naming the first samples), or no
        sample with a target value.
    """
    check_columns(metadata, [column], source, what="target column")
    values = metadata[column]
    present = ~is_missing(values)
    if task == "regression":
        numbers = pd.to_numeric(values.where(present), errors="coerce")
        bad = values[present & numbers.isna()]
        if len(bad):
            shown = ", ".join(f"{sid}={val!r}" for sid, val in list(bad.items())[:5])
            raise InputError(
                f"Target {column!r} must be numeric for regression; {len(bad)} values in "
                f"{source} could not be parsed ({shown}{', ...' if len(bad) > 5 else ''}). "
                "Clean the column or use --task classification."
            )
        infinite = numbers[np.isinf(numbers.to_numpy(dtype=float))]
        if len(infinite):
            raise InputError(f"Target {column!r} in {source} has infinite values for "
                             f"{first_items(infinite.index)} samples. Fix or remove them.")
    if not present.any():
        raise InputError(f"Target {column!r} in {source} is empty or missing for all "
                         f"{len(values)} table samples. Choose another --metadata-column.")
    return present
