"""QIIME 2 metadata twins of our TSVs, so ``qiime metadata tabulate`` (and any QIIME 2 action
taking ``--m-input-file``) reads them.

``predictions.tsv`` keeps its ``sample_id`` column (the design's file contract, read by
``aam compare`` and users' scripts); QIIME 2 does not accept that header, so a sibling
``predictions.qiime2.tsv`` carries the same rows with the first column named ``sample-id`` and a
``#q2:types`` row declaring each column numeric or categorical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aam.atomic import atomic_path
from aam.errors import InputError

SUFFIX = ".qiime2.tsv"


def qiime2_path(path: str | Path) -> Path:
    """``predictions.tsv`` -> ``predictions.qiime2.tsv`` (same folder)."""
    path = Path(path)
    return path.with_name(path.name[: -len(path.suffix)] + SUFFIX if path.suffix
                          else path.name + SUFFIX)


def column_type(values: pd.Series) -> str:
    """``numeric`` when every non-empty value parses as a number, else ``categorical``."""
    present = values.dropna()
    present = present[present.astype(str).str.strip() != ""]
    if present.empty:
        return "categorical"
    return "numeric" if pd.to_numeric(present, errors="coerce").notna().all() else "categorical"


def id_problem(ids: pd.Series) -> str:
    """Why QIIME 2 would refuse these IDs ('' when it accepts them)."""
    ids = ids.astype(str)
    bad = ids[(ids.str.strip() == "") | ids.str.startswith("#") | ids.duplicated()]
    if len(bad):
        return (f"QIIME 2 needs unique, non-empty IDs not starting with '#' (first offending ID: "
                f"{bad.iloc[0]!r})")
    return ""


def write_qiime2_metadata(frame: pd.DataFrame, path: str | Path, id_header: str = "sample-id",
                          float_format: str = "%.10g") -> Path:
    """Write ``frame`` (first column = the IDs) as a QIIME 2 metadata TSV at ``path``.

    Raises
    ------
    InputError
        IDs that QIIME 2 refuses: empty, repeated or starting with ``#``.
    """
    problem = id_problem(frame.iloc[:, 0])
    if problem:
        raise InputError(f"cannot write {path}: {problem}.")
    out = frame.copy()
    out.columns = [id_header] + list(frame.columns[1:])
    types = ["#q2:types"] + [column_type(out[c]) for c in out.columns[1:]]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write("\t".join(out.columns) + "\n" + "\t".join(types) + "\n")
            out.to_csv(handle, sep="\t", index=False, header=False, float_format=float_format)
    return Path(path)


__all__ = ["SUFFIX", "column_type", "id_problem", "qiime2_path", "write_qiime2_metadata"]
