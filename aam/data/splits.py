"""Train/validation/test splits of samples: holdout or k-fold; random, stratified or grouped.

``split_samples`` is pure (seeded); ``write_splits`` writes
``fold~{k}/{train,val,test}_samples.txt`` and ``splits.json``, which every model and the
random-forest baseline read.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from aam.atomic import write_json, write_lines
from aam.provenance import file_fingerprint, list_fingerprint
from aam.data.sample_ids import short_id
from aam.errors import InputError, first_items
from aam.settings import setting

log = logging.getLogger(__name__)
SIDES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """How to split samples.

    ``folds=None`` makes one holdout fold whose val side is ``val_fraction`` of the samples (of the
    groups when ``group_by`` is set). ``folds=K`` makes K folds; each sample (group) is in the val
    side of exactly one fold. ``test_fraction > 0`` first takes one fixed test set, the same in
    every fold and never in train or val; with ``test_fraction = 0`` the test side of each fold is
    its val side (so ``test_samples.txt`` always exists), unless ``inner_val_fraction > 0``:
    then the held-out part is the test side only and the val side is that fraction of the
    fold's training units (grouped or stratified like the rest), so test samples never choose
    an epoch. ``group_by`` keeps every value of that
    column on one side; ``stratify_by`` keeps that column's class proportions on every side.
    Both together stratify the groups: each group must hold one class (a subject-level label
    such as a diagnosis), and every side keeps the classes' proportions of groups, so a small
    validation side is not left with one class.
    """

    folds: Optional[int] = setting(None, "number of cross-validation folds (>= 2); without it "
                                   "one holdout split (--val-fraction)")
    val_fraction: float = setting(0.2, "holdout: fraction of samples (groups) in val")
    test_fraction: float = setting(0.0, "fixed test set taken first, the same in every fold")
    group_by: Optional[str] = setting(None, "column whose values never straddle sides (e.g. "
                                      "subject)")
    stratify_by: Optional[str] = setting(None, "class column whose proportions every side keeps")
    seed: int = setting(0, "random seed of the split")
    inner_val_fraction: float = setting(
        0.0, "with --test-fraction 0: validate on this fraction of each fold's training groups, "
        "so test samples never choose an epoch (0: validate on the test side)")

    def __post_init__(self) -> None:
        if self.folds is not None and self.folds < 2:
            raise InputError(f"--folds must be >= 2 for k-fold cross-validation, got {self.folds}. "
                             "Leave --folds out for one holdout split (--val-fraction).")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be between 0 and 1 (exclusive), got "
                             f"{self.val_fraction}. Use e.g. 0.2.")
        if not 0.0 <= self.test_fraction < 1.0:
            raise InputError(f"--test-fraction must be >= 0 and < 1, got {self.test_fraction}. "
                             "Use 0 for no separate test set, or e.g. 0.2.")
        if not 0.0 <= self.inner_val_fraction < 1.0:
            raise InputError(f"--inner-val-fraction must be >= 0 and < 1, got "
                             f"{self.inner_val_fraction}. Use e.g. 0.2, or 0 to validate on "
                             "the test side.")
        if self.folds is None and self.val_fraction + self.test_fraction >= 1.0:
            raise InputError(f"--val-fraction {self.val_fraction} + --test-fraction "
                             f"{self.test_fraction} leave no samples for training. Make their "
                             "sum smaller than 1.")


@dataclass
class Fold:
    """Sample IDs of one fold's sides, each in input order."""

    train: list[str]
    val: list[str]
    test: list[str]


def split_samples(sample_ids: Sequence[str], cfg: SplitConfig, groups: Optional[Sequence] = None,
                  strata: Optional[Sequence] = None) -> list[Fold]:
    """Split ``sample_ids`` into folds (seeded by ``cfg.seed``; no global random state).

    Parameters
    ----------
    sample_ids : sequence of str [N]
        Unique sample IDs.
    cfg : SplitConfig
        Holdout or k-fold, fractions and seed.
    groups : sequence [N], optional
        Group label per sample (e.g. subject); no group is ever on two sides of a fold.
    strata : sequence [N], optional
        Class label per sample; every side keeps roughly the class proportions (of groups, when
        ``groups`` is given: each group must hold one class).

    Returns
    -------
    list of Fold
        One fold for holdout, ``cfg.folds`` folds for k-fold.

    Raises
    ------
    InputError
        Duplicate IDs, a group holding two classes, too few samples/groups/class members for
        the requested split, or a fold with an empty side.
    """
    ids = [str(s) for s in sample_ids]
    if len(set(ids)) != len(ids):
        dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
        raise InputError(f"{first_items(dup)} sample IDs appear more than once. Keep one row "
                         "per sample before splitting.")
    for name, labels in (("groups", groups), ("strata", strata)):
        if labels is not None and len(labels) != len(ids):
            raise ValueError(f"{name} has {len(labels)} labels for {len(ids)} samples")
    labels = np.asarray(groups if groups is not None else ids, dtype=str)
    unit_names, unit_of = np.unique(labels, return_inverse=True)  # [U], [N]
    sizes = np.bincount(unit_of, minlength=len(unit_names))
    unit_strata = None
    if strata is not None:  # one class per unit (sample, or group)
        unit_strata = _unit_strata(np.asarray(strata, dtype=str), unit_of, unit_names, ids)
    kind = "groups" if groups is not None else "samples"
    rng = np.random.default_rng(cfg.seed)
    remaining = np.arange(len(unit_names))
    test_units = np.array([], dtype=np.int64)
    if cfg.test_fraction > 0:
        n_test = _side_size(cfg.test_fraction, len(unit_names), "test", kind, "--test-fraction")
        test_units = _draw(remaining, n_test, unit_strata, rng)
        remaining = np.setdiff1d(remaining, test_units)
    if cfg.folds is None:
        n_val = _side_size(cfg.val_fraction, len(unit_names), "val", kind, "--val-fraction")
        if n_val >= len(remaining):
            raise InputError(f"Fold 0 has an empty train side: {len(remaining)} {kind} remain "
                             f"after the test set and {n_val} go to val. Lower --val-fraction "
                             "or --test-fraction.")
        val_parts = [_draw(remaining, n_val, unit_strata, rng)]
    else:
        if cfg.folds > len(remaining):
            raise InputError(
                f"Fold {len(remaining)} has an empty val side: {cfg.folds} folds but only "
                f"{len(remaining)} {kind} to split (after the test set). Use --folds "
                f"{len(remaining)} or fewer, or a holdout split (--val-fraction).")
        val_parts = _kfold(remaining, sizes, cfg.folds, unit_strata, rng)
    if cfg.test_fraction == 0 and cfg.inner_val_fraction > 0:
        return [_inner_fold(unit_of, ids, remaining, held_out, unit_strata, cfg, rng, kind, i)
                for i, held_out in enumerate(val_parts)]
    return [_fold(unit_of, ids, remaining, val_units, test_units, i)
            for i, val_units in enumerate(val_parts)]


def _inner_fold(unit_of, ids, remaining, held_out, strata, cfg: SplitConfig, rng, kind: str,
                index: int) -> Fold:
    """Test = the held-out units; val = ``inner_val_fraction`` of the other units (seeded)."""
    train_units = np.setdiff1d(remaining, held_out)
    n_val = _side_size(cfg.inner_val_fraction, len(train_units), "val", kind,
                       "--inner-val-fraction")
    if n_val >= len(train_units):
        raise InputError(f"Fold {index} has an empty train side: {len(train_units)} {kind} "
                         f"remain and {n_val} go to the inner val side. Lower "
                         "--inner-val-fraction or use fewer folds.")
    val_units = _draw(train_units, n_val, strata, rng)
    return _fold(unit_of, ids, remaining, np.concatenate([val_units, held_out]), held_out, index,
                 inner_val=val_units)


def _unit_strata(strata: np.ndarray, unit_of: np.ndarray, unit_names: np.ndarray,
                 ids: list[str]) -> np.ndarray:
    """The class of each unit; refuses a group whose samples hold two classes."""
    unit_strata = np.empty(len(unit_names), dtype=object)
    unit_strata[unit_of] = strata
    mixed = np.flatnonzero(unit_strata[unit_of] != strata)
    if len(mixed):
        i = int(mixed[0])
        group = unit_names[unit_of[i]]
        classes = sorted(set(strata[unit_of == unit_of[i]]))
        raise InputError(
            f"group {short_id(group)} holds samples of {len(classes)} classes of the stratify "
            f"column ({', '.join(classes[:3])}; e.g. sample {short_id(ids[i])}); grouped "
            "stratification needs one class per group (a subject-level label). Stratify by "
            "such a column, or split by the groups alone.")
    return unit_strata


def _side_size(fraction: float, n_units: int, side: str, kind: str, flag: str) -> int:
    count = int(round(fraction * n_units))
    if count < 1:
        raise InputError(f"Fold 0 has an empty {side} side: {flag} {fraction} of {n_units} "
                         f"{kind} rounds to 0. Raise {flag} to at least {1 / n_units:.3g}.")
    return count


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _draw(units: np.ndarray, n: int, strata, rng) -> np.ndarray:
    """``n`` of ``units`` at random, stratified when ``strata`` (per unit) is given."""
    if strata is None:
        return np.sort(rng.permutation(units)[:n])
    _check_strata(strata[units], 2, "a stratified split")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n, random_state=_seed_from(rng))
    try:
        _, picked = next(splitter.split(units, strata[units]))
    except ValueError as err:
        raise InputError(
            f"Cannot stratify {len(units)} samples of {len(set(strata[units]))} classes into a "
            f"side of {n}: {err} Raise the fraction or merge rare classes.") from err
    return np.sort(units[picked])


def _kfold(units, sizes, k: int, strata, rng) -> list[np.ndarray]:
    """K disjoint val parts covering ``units``: stratified, or balanced by sample count."""
    if strata is not None:
        _check_strata(strata[units], 2, f"{k}-fold stratification")
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=_seed_from(rng))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                parts = [units[val] for _, val in splitter.split(units, strata[units])]
            except ValueError as err:
                raise InputError(f"Cannot stratify {len(units)} samples into {k} folds: {err} "
                                 "Use fewer --folds or merge rare classes.") from err
        for warning in caught:
            log.warning("%s", warning.message)
        return [np.sort(p) for p in parts]
    order = rng.permutation(units)
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest groups first
    totals, parts = np.zeros(k, dtype=np.int64), [[] for _ in range(k)]
    for unit in order:
        target = int(np.argmin(totals))
        parts[target].append(unit)
        totals[target] += sizes[unit]
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def _check_strata(values: np.ndarray, minimum: int, what: str) -> None:
    classes, counts = np.unique(values, return_counts=True)
    rare = [f"{c}={n}" for c, n in zip(classes, counts) if n < minimum]
    if rare:
        raise InputError(f"{what} needs at least {minimum} samples per class; "
                         f"{first_items(rare)} classes have fewer. Merge rare classes, drop "
                         "those samples, or split without --stratify-by.")


def _fold(unit_of, ids, remaining, val_units, test_units, index: int,
          inner_val=None) -> Fold:
    # ``val_units`` leave train; ``inner_val`` (when given) is the val side instead of them
    train_units = np.setdiff1d(remaining, val_units)
    val_side = val_units if inner_val is None else inner_val
    sides = {"train": np.isin(unit_of, train_units), "val": np.isin(unit_of, val_side),
             "test": np.isin(unit_of, test_units if len(test_units) else val_units)}
    for side, mask in sides.items():
        if not mask.any():
            raise InputError(f"Fold {index} has an empty {side} side. Use fewer folds or larger "
                             "fractions, or split by a column with more groups.")
    return Fold(**{side: [ids[i] for i in np.flatnonzero(mask)] for side, mask in sides.items()})


def split_metadata(metadata: pd.DataFrame, cfg: SplitConfig,
                   source: str = "the metadata") -> list[Fold]:
    """Split the samples (index) of ``metadata``, taking groups/strata from its columns.

    Raises
    ------
    InputError
        The group or stratify column is missing (listing the available columns) or has missing
        values; plus everything :func:`split_samples` raises.
    """
    from aam.data.metadata import check_columns, column_labels

    columns = {"group": cfg.group_by, "stratify": cfg.stratify_by}
    values = {}
    for role, column in columns.items():
        if not column:
            continue
        check_columns(metadata, [column], source, what=f"{role} column")
        values[role] = column_labels(metadata[column], role, source).to_numpy()
    return split_samples(list(metadata.index), cfg, groups=values.get("group"),
                         strata=values.get("stratify"))


def write_splits(folds: list[Fold], cfg: SplitConfig, output_dir: str | Path,
                 metadata: str | Path | None = None) -> Path:
    """Write ``fold~{k}/{train,val,test}_samples.txt`` and ``splits.json`` atomically.

    Returns the path of ``splits.json`` (config, kind, per-fold side sizes, ``test_is_val``,
    and ``provenance``: fingerprints of ``metadata`` and of every list).
    """
    out = Path(output_dir)
    for k, fold in enumerate(folds):
        for side in SIDES:
            write_lines(out / f"fold~{k}" / f"{side}_samples.txt", getattr(fold, side))
    test_is_val = cfg.test_fraction == 0 and cfg.inner_val_fraction == 0
    if test_is_val:
        log.info("--test-fraction is 0: each fold's test_samples.txt repeats its val_samples.txt")
    sizes = [{"fold": k, **{side: len(getattr(f, side)) for side in SIDES}}
             for k, f in enumerate(folds)]
    for row in sizes:
        log.info("fold %d: %d train, %d val, %d test samples", row["fold"], row["train"],
                 row["val"], row["test"])
    summary = {"config": asdict(cfg), "kind": "holdout" if cfg.folds is None else "k-fold",
               "n_folds": len(folds),
               "n_samples": len(set(folds[0].train) | set(folds[0].val) | set(folds[0].test)),
               "test_is_val": test_is_val, "folds": sizes,
               "provenance": {**({"metadata": file_fingerprint(metadata)} if metadata else {}),
                              "lists": [{side: list_fingerprint(getattr(f, side))
                                         for side in SIDES} for f in folds]}}
    path = out / "splits.json"
    write_json(path, summary)
    return path
