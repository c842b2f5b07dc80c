"""Known-truth check on ``aam simulate`` output: do attributions rank the signal ASVs first?

``truth.json`` names the ASVs of the clades that drive the target by their index in the
simulated table; the table beside it (``table.biom``, ASV IDs = sequences) turns them into
sequences. The check is the AUROC of an importance score (every prepared ASV; ASVs with no
score count 0) at telling signal ASVs from the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pandas as pd

from aam.data.biom_io import read_table
from aam.errors import InputError
from aam.explain.tables import signal_auroc


def signal_sequences(truth_path: str | Path) -> set[str]:
    """Sequences of the signal ASVs of ``truth.json`` (read with the ``table.biom`` beside it).

    Raises
    ------
    InputError
        The file is not an ``aam simulate`` truth or has no table beside it.
    """
    truth_path = Path(truth_path)
    if not truth_path.is_file():
        raise FileNotFoundError(f"truth file not found: {truth_path}")
    table_path = truth_path.with_name("table.biom")
    try:
        clades = json.loads(truth_path.read_text(encoding="utf-8"))["clades"]
        index = {int(i) for clade in clades for i in clade["asv_index"]}
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{truth_path} is not the truth.json of aam simulate (no clades with "
                         "asv_index).") from None
    if not table_path.is_file():
        raise InputError(f"{truth_path} needs the simulated table.biom beside it to name the "
                         "signal ASVs; keep the aam simulate folder together.")
    sequences = read_table(table_path).feature_ids
    return {str(sequences[i]).upper() for i in index}


def truth_aurocs(sequences: list[str], signal: set[str], aam: pd.Series,
                 rf: Optional[pd.Series] = None) -> dict:
    """AUROC of AAM's (and the forest's) importance by sequence over every prepared ASV."""
    upper = [s.upper() for s in sequences]
    present = signal & set(upper)
    result = {"n_asvs": len(upper), "n_signal": len(present)}
    for name, scores in (("aam", aam), ("rf", rf)):
        if scores is None:
            continue
        keyed = pd.Series(scores.to_numpy(float), index=[str(s).upper() for s in scores.index])
        full = keyed.groupby(level=0).max().reindex(upper).fillna(0.0)
        result[f"{name}_auroc"] = signal_auroc(full, present)
    return result


__all__ = ["signal_sequences", "truth_aurocs"]
