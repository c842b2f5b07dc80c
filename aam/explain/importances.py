"""``--rf-importances``: the forest's ``feature_importance.tsv`` read and checked against the
explained data (one reader; every problem is one line naming the file, the line and the fix).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from aam.errors import InputError, short_text

log = logging.getLogger(__name__)

#: Below this fraction of the file's ASVs found in the explained data, a warning says so.
SMALL_OVERLAP = 0.5
_FIX = "Use the feature_importance.tsv that aam rf-baseline wrote"


def read_rf_importances(path: str | Path) -> pd.Series:
    """Importance by sequence from ``aam rf-baseline``'s ``feature_importance.tsv``.

    Sequences are stripped and upper-cased; importances must be finite numbers.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        The file is not UTF-8 TSV, lacks the ``sequence``/``importance`` columns, has no rows,
        a row without a sequence, an importance that is text, empty, NaN or infinite, or a
        sequence listed twice (each naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rf importances file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start} cannot be decoded). "
                         f"{_FIX}.") from None
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path} is not a readable TSV ({str(err).splitlines()[0]}). "
                         f"{_FIX}.") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the extra fields as an index
        raise InputError(f"{path}: line 2 has more tab-separated fields than the header. "
                         f"{_FIX}.")
    if not {"sequence", "importance"} <= set(frame.columns):
        raise InputError(f"{path} lacks the sequence/importance columns of aam rf-baseline's "
                         "feature_importance.tsv; pass that file as --rf-importances.")
    if frame.empty:
        raise InputError(f"{path} has no rows (only a header). {_FIX} for this data.")
    line = frame.index.to_numpy() + 2  # file line of each row (the header is line 1)
    sequences = frame["sequence"].astype(str).str.strip().str.upper()
    empty = (sequences == "").to_numpy()
    if empty.any():
        raise InputError(f"{path} line {line[empty][0]} has no sequence. {_FIX}.")
    raw = frame["importance"].astype(str).str.strip()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = short_text(repr(raw.iloc[i]), 24)
        what = "is not a number" if np.isnan(values[i]) else "is not finite"
        if raw.iloc[i].lower() in ("", "nan", "na", "n/a", "null", "none"):
            what = "is empty or NaN"
        n_bad = int(bad.sum())
        raise InputError(f"{path} line {line[i]}: importance {shown} {what} ({n_bad} such "
                         f"row{'s' if n_bad > 1 else ''}). Importances must be finite numbers. "
                         f"{_FIX}.")
    repeated = sequences.duplicated(keep=False).to_numpy()
    if repeated.any():
        first = sequences[repeated].iloc[0]
        where = ", ".join(map(str, line[(sequences == first).to_numpy()][:5]))
        raise InputError(f"{path} lists sequence {short_text(first)} more than once (lines "
                         f"{where}). Keep one row per ASV. {_FIX}.")
    return pd.Series(values, index=pd.Index(sequences.to_numpy(), name="sequence"),
                     name="importance")


def shared_importances(importances: pd.Series, sequences: list[str], path: str | Path,
                       data: str) -> tuple[pd.Series, dict]:
    """The importances of the explained data's ASVs, keyed by its own sequences.

    Parameters
    ----------
    importances : Series
        From :func:`read_rf_importances` (upper-case sequences).
    sequences : list of str
        The prepared ASV sequences.
    path, data : str or Path
        The importances file and the prepared folder, for messages.

    Returns
    -------
    shared : Series
        Importance by prepared sequence, only the ASVs of both.
    overlap : dict
        ``n_asvs`` (rows of the file) and ``n_shared``.

    Raises
    ------
    InputError
        No ASV of the file is an ASV of the data (the forest was fitted on another data set).
    """
    spelled = {str(s).upper(): s for s in sequences}
    keep = [s for s in importances.index if s in spelled]
    overlap = {"n_asvs": len(importances), "n_shared": len(keep)}
    if not keep:
        raise InputError(f"none of the {len(importances)} ASVs in {path} is an ASV of {data}: "
                         "the forest was fitted on other data. Run aam rf-baseline on this "
                         "folder.")
    if len(keep) < len(importances):
        level = logging.WARNING if len(keep) < SMALL_OVERLAP * len(importances) else logging.INFO
        log.log(level, "only %d of the %d ASVs in %s are ASVs of %s; the rank agreement uses "
                "those %d (was the forest fitted on another prepared folder?)", len(keep),
                len(importances), path, data, len(keep))
    else:
        log.info("all %d ASVs in %s are ASVs of %s", len(keep), path, data)
    shared = importances.loc[keep]
    shared.index = pd.Index([spelled[s] for s in keep], name="sequence")
    return shared, overlap


__all__ = ["SMALL_OVERLAP", "read_rf_importances", "shared_importances"]
