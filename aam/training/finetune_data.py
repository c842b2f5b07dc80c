"""Fine-tuning inputs: sample split, target transform and category vocabulary fitted on the
training samples, derived config values, and the two datasets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import torch

from aam.config import FinetuneConfig, ModelConfig, from_dict
from aam.data.categories import CategoryVocab, cardinalities, encode_categories, fit_categories
from aam.data.dataset import SampleDataset
from aam.data.metadata import column_labels
from aam.data.prepared import PreparedData
from aam.data.targets import (TargetTransform, build_transform, encode_classes, fit_classes,
                              group_keys, parse_regression_target)
from aam.data.tokens import longest
from aam.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class FinetuneSetup:
    """Everything derived from the data before the model is built.

    ``groups`` maps every sample to its ``normalize_by`` tuple; ``actual`` maps validation
    samples to their original-scale target (or class label).
    """

    cfg: FinetuneConfig
    train_ids: list[str]
    val_ids: list[str]
    train_set: SampleDataset
    val_set: SampleDataset
    transform: Optional[TargetTransform]
    classes: Optional[list[str]]
    vocab: CategoryVocab
    groups: dict
    actual: dict
    class_weight: Optional[torch.Tensor]


def random_split(sample_ids: Sequence[str], val_fraction: float,
                 seed: int) -> tuple[list[str], list[str]]:
    """Seeded split into (train, val) sample lists; validation gets at least one sample."""
    ids = np.asarray([str(s) for s in sample_ids])
    if len(ids) < 2:
        raise InputError(f"fine-tuning needs at least 2 samples to split, got {len(ids)}.")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, int(round(val_fraction * len(ids)))))
    return sorted(ids[order[n_val:]].tolist()), sorted(ids[order[:n_val]].tolist())


def subject_groups(data: PreparedData, column: str, sample_ids: list[str]) -> Optional[dict]:
    """Sample -> subject from metadata ``column`` (None when no column is given).

    Raises
    ------
    InputError
        When the column is missing or empty for a training sample.
    """
    if not column:
        return None
    meta = data.metadata
    if column not in meta.columns:
        raise InputError(f"--group-by column '{column}' is not in the prepared metadata "
                         f"(columns: {', '.join(map(str, meta.columns))}); name the subject "
                         "column, or leave --group-by out.")
    labels = column_labels(meta.loc[sample_ids, column], "--group-by", "the prepared metadata")
    return labels.to_dict()



def encoder_model_config(encoder_config: dict, user: ModelConfig) -> ModelConfig:
    """The model sizes of a pretraining checkpoint's config (they override the user's)."""
    model = from_dict(ModelConfig, encoder_config.get("model", encoder_config))
    return replace(model, gradient_checkpointing=user.gradient_checkpointing)


def resolve_sizes(cfg: FinetuneConfig, data: PreparedData, pretrained: bool) -> FinetuneConfig:
    """Set ``max_bp`` of data and model from the ASVs.

    A pretrained encoder keeps its ``max_bp``; longer ASVs are truncated to it (logged).
    """
    data_bp = cfg.data.max_bp or longest(data.sequences)
    if not pretrained:
        return replace(cfg, data=replace(cfg.data, max_bp=data_bp),
                       model=replace(cfg.model, max_bp=data_bp))
    if data_bp > cfg.model.max_bp:
        log.warning("ASVs up to %d nt are truncated to the pretrained encoder's max_bp %d",
                    data_bp, cfg.model.max_bp)
        data_bp = cfg.model.max_bp
    return replace(cfg, data=replace(cfg.data, max_bp=data_bp))


def build_setup(cfg: FinetuneConfig, data: PreparedData, train_ids: list[str],
                val_ids: list[str], *, vocab: Optional[CategoryVocab] = None,
                transform_state: Optional[TargetTransform] = None,
                classes: Optional[list[str]] = None) -> FinetuneSetup:
    """Fit (or reuse, when resuming) the target transform, classes and category vocabulary on
    the training samples and build both datasets.

    Raises
    ------
    InputError
        For a missing or non-numeric target, unknown validation classes, or missing columns.
    """
    meta, column = data.metadata, cfg.target_column
    columns = list(cfg.data.categorical_columns)
    vocab = vocab if vocab is not None else fit_categories(meta.loc[train_ids], columns)
    all_ids = train_ids + val_ids
    cat_ids = encode_categories(meta, vocab, all_ids)[0] if columns else None
    groups = dict(zip(all_ids, group_keys(meta, cfg.data.normalize_by, all_ids)))
    transform, class_weight = None, None
    if cfg.task == "classification":
        classes = classes or fit_classes(meta, column, train_ids)
        labels = encode_classes(meta, column, all_ids, classes)
        targets = labels.astype(np.int64)
        actual = {s: classes[k] for s, k in zip(val_ids, labels[len(train_ids):])}
        if cfg.class_weights:
            freq = np.bincount(labels[: len(train_ids)], minlength=len(classes)).astype(float)
            class_weight = torch.tensor(len(train_ids) / (len(classes) * np.maximum(freq, 1)),
                                        dtype=torch.float32)
        cfg = replace(cfg, out_dim=len(classes))
    else:
        values = parse_regression_target(meta, column, all_ids)
        train_groups = [groups[s] for s in train_ids]
        transform = transform_state or build_transform(
            cfg.data.target_transform, cfg.data.normalize_by).fit(values[: len(train_ids)],
                                                                  train_groups)
        targets = transform.transform(values, [groups[s] for s in all_ids]).astype(np.float32)
        actual = dict(zip(val_ids, values[len(train_ids):].tolist()))
        cfg = replace(cfg, out_dim=1)
    cfg = replace(cfg, fusion=replace(cfg.fusion, cardinalities=cardinalities(vocab, columns)))
    n = len(train_ids)
    seed = cfg.train.seed
    train_set = SampleDataset(data, train_ids, cfg.data, targets=targets[:n],
                              cat_ids=None if cat_ids is None else cat_ids[:n], seed=seed)
    val_set = SampleDataset(data, val_ids, cfg.data, targets=targets[n:],
                            cat_ids=None if cat_ids is None else cat_ids[n:], seed=seed + 1)
    log.info("fine-tuning on %d training and %d validation samples (%s of '%s')",
             len(train_ids), len(val_ids), cfg.task, column)
    return FinetuneSetup(cfg, train_ids, val_ids, train_set, val_set, transform, classes, vocab,
                         groups, actual, class_weight)
