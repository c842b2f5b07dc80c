"""``aam train --selection-folds K``: the fitted start or fine-tuning, chosen on K inner folds of
subjects instead of one validation split.

The given training + validation samples are split into K folds that keep each subject whole
(:func:`assign_folds`). For each fold the start is fitted and fine-tuned on the other folds, and
every epoch (epoch 0: the start) is scored on the fold (:mod:`aam.training.inner_folds_run`).
Each subject's out-of-fold loss, pooled over the folds (:func:`pool_losses`), chooses the epoch
with the margin rule of a single split (:func:`choose_epoch`); the model written is the start
fitted on all given samples, or a fine-tuning of all of them for exactly that many epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from aam.config import FinetuneConfig
from aam.errors import InputError
from aam.training.finetune_objective import paired_standard_error, unit_losses


def check_selection(cfg: FinetuneConfig, resume_from: Optional[Path]) -> None:
    """Refuse settings ``--selection-folds`` cannot run with, before any data is read.

    Raises
    ------
    InputError
        Without ``--group-by`` or with ``--resume-from`` (``--no-attention-path``, with no
        fine-tuning to choose, is refused by the config).
    """
    k = cfg.selection_folds
    if k < 2:
        return
    if not cfg.group_by:
        raise InputError(f"--selection-folds {k} needs --group-by SUBJECT_COLUMN: its folds keep "
                         "each subject's samples together. Name the subject column, or drop "
                         "--selection-folds.")
    if resume_from is not None:
        raise InputError(f"--resume-from cannot be combined with --selection-folds {k}: the "
                         "inner-fold runs keep no checkpoint. Run the command again without "
                         "--resume-from (it starts over), or drop --selection-folds.")


def assign_folds(groups: dict[str, str], k: int, seed: int) -> list[list[str]]:
    """Split the samples of ``groups`` (sample -> subject) into ``k`` folds of whole subjects.

    Subjects are taken in a seeded random order, largest first, each into the fold with the
    fewest subjects so far (then the fewest samples): fold sizes in subjects differ by at most
    one. Returns each fold's samples, sorted.

    Raises
    ------
    InputError
        When there are fewer subjects than folds.
    """
    subjects = sorted({str(s) for s in groups.values()})
    if len(subjects) < k:
        raise InputError(f"--selection-folds {k} needs at least {k} subjects, but the "
                         f"{len(groups)} given samples hold {len(subjects)} (--group-by). Use "
                         f"--selection-folds {max(len(subjects), 2)} or fewer, or give more "
                         "subjects.")
    size = {s: 0 for s in subjects}
    for subject in groups.values():
        size[str(subject)] += 1
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    order.sort(key=lambda s: -size[s])  # stable: the seeded order breaks ties
    members: list[list[str]] = [[] for _ in range(k)]
    samples = [0] * k
    for subject in order:
        fold = min(range(k), key=lambda j: (len(members[j]), samples[j], j))
        members[fold].append(subject)
        samples[fold] += size[subject]
    fold_of = {s: j for j, subs in enumerate(members) for s in subs}
    return [sorted(x for x, s in groups.items() if fold_of[str(s)] == j) for j in range(k)]


@dataclass(frozen=True)
class EpochChoice:
    """The epoch chosen on pooled out-of-fold losses (see :func:`choose_epoch`)."""

    epoch: int  # e*: 0 (the fitted start) or the fine-tuned epoch kept
    lowest_epoch: int  # the epoch with the lowest pooled loss
    pooled_loss: list[float]  # per epoch: mean over subjects of their out-of-fold loss
    difference: float  # pooled loss of lowest_epoch minus that of epoch 0
    standard_error: float  # of the paired per-subject difference
    selection_se: float
    decision: str  # "fitted start" or "fine-tuned"

    def to_dict(self) -> dict:
        return asdict(self)


def choose_epoch(subject_losses: Sequence[dict[str, float]], selection_se: float
                 ) -> EpochChoice:
    """The epoch with the lowest pooled loss, kept over epoch 0 only when it is lower by more
    than ``selection_se`` standard errors of the paired per-subject difference.

    Parameters
    ----------
    subject_losses : sequence of dict[str, float]
        Per epoch (0 = the fitted start), each subject's out-of-fold loss.
    selection_se : float
        The margin in standard errors (0: the lowest pooled loss wins).
    """
    pooled = [float(np.mean(list(losses.values()))) for losses in subject_losses]
    lowest = int(np.argmin(pooled))  # the first of equal losses
    difference = pooled[lowest] - pooled[0]
    se = paired_standard_error(subject_losses[lowest], subject_losses[0])
    kept = lowest > 0 and -difference > selection_se * se
    return EpochChoice(lowest if kept else 0, lowest, pooled, difference, se, selection_se,
                       "fine-tuned" if kept else "fitted start")


def pool_losses(fold_losses: Sequence[dict[int, dict[str, float]]], units: dict[str, str]
                ) -> tuple[list[dict[str, float]], list[list[float]]]:
    """Pool the folds' out-of-fold losses by subject.

    Parameters
    ----------
    fold_losses : sequence of dict[int, dict[str, float]]
        Per fold, per epoch, each held-out sample's loss.
    units : dict[str, str]
        Sample -> subject.

    Returns
    -------
    per_epoch : list of dict[str, float]
        Per epoch (those every fold scored), each subject's mean loss over its samples.
    per_fold : list of list of float
        Per fold, its loss per epoch: the mean over its subjects.
    """
    epochs = sorted(set.intersection(*(set(f) for f in fold_losses)))
    per_epoch: list[dict[str, float]] = []
    per_fold: list[list[float]] = [[] for _ in fold_losses]
    for e in epochs:
        pooled: dict[str, float] = {}
        for k, losses in enumerate(fold_losses):
            fold = unit_losses(list(losses[e]), np.asarray(list(losses[e].values())), units)
            per_fold[k].append(float(np.mean(list(fold.values()))))
            pooled.update(fold)
        per_epoch.append(pooled)
    return per_epoch, per_fold


__all__ = ["EpochChoice", "assign_folds", "check_selection", "choose_epoch", "pool_losses"]
