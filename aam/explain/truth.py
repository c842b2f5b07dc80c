"""Known-truth check on ``aam simulate`` output: do attributions rank the signal ASVs first?

``truth.json`` names the ASVs of the clades that drive the target by their index in the
simulated table; the table beside it (``table.biom``, ASV IDs = sequences) turns them into
sequences. The check is the AUROC of an importance score (every prepared ASV; ASVs with no
score count 0) at telling signal ASVs from the rest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import pandas as pd

from aam.data.biom_io import read_table
from aam.errors import InputError, short_text
from aam.explain.tables import signal_auroc

log = logging.getLogger(__name__)


def signal_sequences(truth_path: str | Path) -> set[str]:
    """Sequences of the signal ASVs of ``truth.json`` (read with the ``table.biom`` beside it).

    Every ``asv_index`` must be a whole number in ``0 .. n_asvs - 1`` of that table, listed
    once over all clades; at least one ASV must be signal and at least one not.

    Raises
    ------
    FileNotFoundError
        ``truth_path`` does not exist.
    InputError
        The file is not an ``aam simulate`` truth, has no table beside it, or an index is text,
        negative, out of range or repeated; no signal ASV, or no ASV without signal.
    """
    truth_path = Path(truth_path)
    if not truth_path.is_file():
        raise FileNotFoundError(f"truth file not found: {truth_path}")
    rerun = "Pass the truth.json that aam simulate wrote (or rerun aam simulate)."
    try:
        truth = json.loads(truth_path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError too
        reason = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
        raise InputError(f"{truth_path} is truncated or not UTF-8 JSON ({reason}). "
                         f"{rerun}") from None
    clades = truth.get("clades") if isinstance(truth, dict) else None
    if not isinstance(clades, list) or not all(
            isinstance(c, dict) and isinstance(c.get("asv_index"), list) for c in clades):
        raise InputError(f"{truth_path} is not the truth.json of aam simulate (no clades with "
                         f"asv_index). {rerun}")
    table_path = truth_path.with_name("table.biom")
    if not table_path.is_file():
        raise InputError(f"{truth_path} needs the simulated table.biom beside it to name the "
                         "signal ASVs; keep the aam simulate folder together.")
    sequences = read_table(table_path).feature_ids
    index = _signal_index(truth_path, clades, len(sequences))
    if not index:
        raise InputError(f"{truth_path} names no signal ASV (every clade's asv_index is empty); "
                         f"the AUROC needs some. {rerun}")
    if len(index) == len(sequences):
        raise InputError(f"{truth_path} marks all {len(sequences)} ASVs of {table_path} as signal;"
                         f" the AUROC needs ASVs without signal too. {rerun}")
    return {str(sequences[i]).upper() for i in index}


def _signal_index(path: Path, clades: list, n_asvs: int) -> set[int]:
    """Every ``asv_index`` entry, checked: a whole number in range, listed once."""
    seen: dict[int, str] = {}
    for k, clade in enumerate(clades):
        name = short_text(clade.get("name", f"#{k + 1}"), 24)
        for value in clade["asv_index"]:
            where = f"{path}: clade {name!s} asv_index"
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{where} holds {short_text(repr(value), 24)}, not a whole "
                                 "number; indices are ASV positions in table.biom (0, 1, ...).")
            if value < 0:
                raise InputError(f"{where} holds {value}, a negative index; indices count ASVs "
                                 f"of table.biom from 0 to {n_asvs - 1}.")
            if value >= n_asvs:
                raise InputError(f"{where} holds {value}, beyond the {n_asvs} ASVs of the "
                                 f"table.biom beside it (0 to {n_asvs - 1}). Keep truth.json "
                                 "with the table simulated with it.")
            if value in seen:
                also = "" if seen[value] == name else f", already in clade {seen[value]}"
                raise InputError(f"{where} lists ASV {value} twice{also}; list each signal ASV "
                                 "once.")
            seen[value] = name
    return set(seen)


def truth_aurocs(sequences: list[str], signal: set[str], aam: pd.Series,
                 rf: Optional[pd.Series] = None, source: str = "truth.json",
                 data: str = "the prepared data", linear: Optional[pd.Series] = None) -> dict:
    """AUROC of AAM's (and the forest's, the linear model's) importance by sequence over every
    prepared ASV.

    Raises
    ------
    InputError
        No signal ASV is a prepared ASV (the truth of another simulation), or every prepared
        ASV is a signal ASV (nothing to tell apart).
    """
    upper = [s.upper() for s in sequences]
    present = signal & set(upper)
    result = {"n_asvs": len(upper), "n_signal": len(present)}
    if not present:
        raise InputError(f"none of the {len(signal)} signal ASVs of {source} is an ASV of {data}"
                         " (the truth of another simulation?). Prepare the table.biom beside "
                         "it.")
    if len(present) == len(set(upper)):
        raise InputError(f"every ASV of {data} is a signal ASV of {source}; the AUROC needs ASVs "
                         "without signal too. Prepare the whole simulated table.")
    if len(present) < len(signal):
        log.warning("%d of the %d signal ASVs of %s are not ASVs of %s (dropped by aam prepare?);"
                    " the AUROC uses the other %d", len(signal) - len(present), len(signal),
                    source, data, len(present))
    for name, scores in (("aam", aam), ("rf", rf), ("linear", linear)):
        if scores is None:
            continue
        keyed = pd.Series(scores.to_numpy(float), index=[str(s).upper() for s in scores.index])
        full = keyed.groupby(level=0).max().reindex(upper).fillna(0.0)
        result[f"{name}_auroc"] = signal_auroc(full, present)
    return result


__all__ = ["signal_sequences", "truth_aurocs"]
