"""Readable model labels for the report: "cross-attention, frozen" instead of the Paramspace
folder name ``categorical-fusion~cross-attention_freeze-base~true``.

A label comes from the ablation table's optional ``label`` column (the workflow passes them as a
two-column TSV, ``model`` and ``label``), else from the row's settings: the fusion name, then the
settings that differ from the fine-tuning defaults, in the table's column order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from aam.errors import InputError

BASELINE_LABEL = "random forest"
OTHER_BASELINE_LABELS = {"linear": "linear (CLR)"}  # further baselines' run folders -> labels
# (column, value) -> words; a pair listed with None is a default and left out of the label.
WORDS = {
    ("freeze-base", "true"): "frozen", ("freeze-base", "false"): None,
    ("pretrained", "true"): None, ("pretrained", "false"): "no pretraining",
    ("count-prediction", "true"): None, ("count-prediction", "false"): "no count head",
    ("asv-sampling", "first"): None, ("asv-sampling", "abundance"): "abundant ASVs",
    ("asv-sampling", "random"): "random ASVs",
    ("attention-path", "true"): None, ("attention-path", "false"): "head only",
    ("abundance-head-features", "fourier"): None,
    ("abundance-head-features", "identity"): "ASV identity head",
}
FUSION = "categorical-fusion"  # its value leads the label


def derive_label(model: str, params: dict, baseline: str = "rf") -> str:
    """The label of a model from its ablation settings (``params``: column -> value)."""
    if model == baseline:
        return BASELINE_LABEL
    if not params:
        return OTHER_BASELINE_LABELS.get(model, model)
    words = [params[FUSION]] if FUSION in params else []
    for key, value in params.items():
        if key == FUSION:
            continue
        if (key, value) in WORDS:
            word = WORDS[(key, value)]
        else:
            word = f"{key} {value}"
        if word:
            words.append(word)
    return ", ".join(words) or model


def read_labels(path: str | Path) -> dict[str, str]:
    """``model`` -> ``label`` from a two-column TSV (the workflow's ``labels.tsv``).

    Raises
    ------
    InputError
        The columns are missing or a label is used for two models.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if not {"model", "label"} <= set(frame.columns):
        raise InputError(f"{path} needs the columns model and label (found "
                         f"{', '.join(frame.columns)}).")
    frame = frame[frame["label"].str.strip() != ""]
    twice = frame["label"][frame["label"].duplicated()].tolist()
    if twice:
        raise InputError(f"{path}: the label {twice[0]!r} names two models; make labels unique.")
    return dict(zip(frame["model"], frame["label"].str.strip()))


def model_labels(runs, explicit: Optional[dict[str, str]] = None,
                 baseline: str = "rf") -> dict[str, str]:
    """Label of every model of ``runs``: the explicit one, else derived; made unique by adding
    the model name where two derived labels collide."""
    explicit = explicit or {}
    labels = {}
    for run in runs:
        if run.model not in labels:
            labels[run.model] = explicit.get(run.model) or derive_label(run.model, run.params,
                                                                        baseline)
    counts = pd.Series(list(labels.values())).value_counts()
    return {m: (f"{lab} ({m})" if counts[lab] > 1 and m not in explicit else lab)
            for m, lab in labels.items()}


__all__ = ["BASELINE_LABEL", "derive_label", "model_labels", "read_labels"]
