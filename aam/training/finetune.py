"""``aam train``: fine-tune a Predictor on a sample target and write the run's outputs.

Outputs in the output folder: ``train_samples.txt``, ``val_samples.txt``, ``config.resolved.yaml``,
``checkpoints/{best,last}.pt``, ``model.pt`` (= best), ``val_predictions.tsv`` (best epoch,
original scale), ``metrics.json`` and ``tensorboard/``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from aam.atomic import write_lines, write_text
from aam.config import FinetuneConfig, dump_yaml, to_dict
from aam.data.prepared import PreparedData, load_prepared
from aam.data.sample_ids import read_sample_lists
from aam.data.splits import SplitConfig, split_samples
from aam.data.targets import transform_from_dict
from aam.errors import InputError
from aam.model_card import write_model_card
from aam.models.predictor import predictor_from_checkpoint
from aam.predictions import write_metrics, write_predictions
from aam.provenance import check_same_inputs, provenance
from aam.training.callbacks import CheckpointCallback, EarlyStopping, ResumeCheckpoints
from aam.training.checkpoint import (Checkpoint, PredictorState, load_checkpoint,
                                     save_checkpoint)
from aam.training.dist_data import build_loaders
from aam.training.distributed import DistContext, barrier, distributed_session
from aam.training.finetune_callbacks import FinetuneTensorBoard, start_only
from aam.training.finetune_data import (build_setup, encoder_model_config, random_split,
                                        resolve_sizes, subject_groups)
from aam.training.finetune_model import build_model, fit_start, parameter_groups
from aam.training.finetune_objective import FinetuneObjective
from aam.training.head_fit import refit_abundance_head
from aam.training.inner_folds import check_selection
from aam.training.inner_folds_run import run_selection
from aam.training.loop import fit
from aam.training.resume import adopt_derived, check_resume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetunePaths:
    """Where a fine-tuning run reads from and writes to."""

    data_dir: Path
    output_dir: Path
    train_samples: Optional[Path] = None
    val_samples: Optional[Path] = None
    pretrained_encoder: Optional[Path] = None
    resume_from: Optional[Path] = None
    fold: Optional[str] = None


def warn_redundant(cfg: FinetuneConfig) -> None:
    """Log warnings for option combinations that do nothing or double up."""
    scaling = cfg.fusion.conditional_output_scaling
    if scaling and cfg.data.target_transform == "zscore-category" and \
            scaling in cfg.data.normalize_by:
        log.warning("--conditional-output-scaling %s with zscore-category by the same column: "
                    "the per-category shift is already removed by the transform", scaling)
    if scaling and cfg.task == "classification":
        log.warning("--conditional-output-scaling on classification scales class logits per "
                    "category")
    if cfg.val_prediction_passes > 1 and cfg.data.asv_sampling != "random":
        log.warning("--val-prediction-passes %d does nothing with --asv-sampling %s (every pass "
                    "sees the same ASVs); use --asv-sampling random", cfg.val_prediction_passes,
                    cfg.data.asv_sampling)


def _split(cfg: FinetuneConfig, data: PreparedData, paths: FinetunePaths):
    if (paths.train_samples is None) != (paths.val_samples is None):
        raise InputError("give both --train-samples and --val-samples, or neither (then "
                         "the prepared samples are split with --val-fraction).")
    if paths.train_samples is None:
        return _split_prepared(cfg, data)
    lists = read_sample_lists({"--train-samples": paths.train_samples,
                               "--val-samples": paths.val_samples}, data.sample_ids)
    return lists["--train-samples"], lists["--val-samples"]


def _split_prepared(cfg: FinetuneConfig, data: PreparedData) -> tuple[list[str], list[str]]:
    """Split the prepared samples (no sample lists given): by ``group_by``'s subjects, so no
    subject is on both sides; without it at random, with a loud warning."""
    ids = list(data.sample_ids)
    if not cfg.group_by:
        log.warning("NO SUBJECT GROUPING: without --group-by and without --train-samples / "
                    "--val-samples the %d prepared samples are split at random, so samples of "
                    "one subject can land on both sides and the validation score (which picks "
                    "the epoch and the head's penalty) is optimistic. Give --group-by "
                    "SUBJECT_COLUMN, or sample lists from `aam split --group-by`.", len(ids))
        return random_split(ids, cfg.data.val_fraction, cfg.train.seed)
    groups = subject_groups(data, cfg.group_by, ids)
    split = SplitConfig(val_fraction=cfg.data.val_fraction, seed=cfg.train.seed)
    fold = split_samples(ids, split, groups=[groups[s] for s in ids])[0]
    log.info("split the prepared samples by --group-by %s: %d training and %d validation "
             "samples of %d and %d subjects", cfg.group_by, len(fold.train), len(fold.val),
             len({groups[s] for s in fold.train}), len({groups[s] for s in fold.val}))
    return sorted(fold.train), sorted(fold.val)


def _model_config(cfg: FinetuneConfig, paths: FinetunePaths, resume: Optional[Checkpoint]):
    """Model sizes from the resumed or pretrained checkpoint; returns (cfg, encoder payload).

    A resumed run must match its checkpoint's model and data settings (``check_resume``);
    its derived values (sequence length, classes, cardinalities) come from the checkpoint.
    """
    if resume is not None:
        check_resume(cfg, resume, paths.resume_from)
        return adopt_derived(cfg, resume), None
    if paths.pretrained_encoder is None:
        return cfg, None
    encoder = load_checkpoint(paths.pretrained_encoder, "encoder")
    model = encoder_model_config(encoder.config, cfg.model)
    if model != cfg.model:
        log.info("model sizes come from the pretrained encoder %s and override the given ones: "
                 "%s", paths.pretrained_encoder, to_dict(model))
    return replace(cfg, model=model), encoder


def run_finetune(cfg: FinetuneConfig, paths: FinetunePaths) -> dict:
    """Fine-tune and write every output of the run; returns the metrics dict.

    Raises
    ------
    FileNotFoundError
        For a missing data folder, sample list or checkpoint.
    InputError
        For bad targets, columns, sample lists or checkpoints.
    """
    check_selection(cfg, paths.resume_from)
    with distributed_session(cfg.train.parallel, cfg.train.device) as ctx:
        return _finetune(cfg, paths, ctx)


def _finetune(cfg: FinetuneConfig, paths: FinetunePaths, ctx: DistContext) -> dict:
    """The run on one rank: every rank trains on its share; rank 0 alone writes files."""
    start = time.perf_counter()
    out = Path(paths.output_dir)
    data = load_prepared(paths.data_dir)
    resume = load_checkpoint(paths.resume_from, "predictor") if paths.resume_from else None
    cfg, encoder = _model_config(cfg, paths, resume)
    if cfg.selection_folds >= 2:  # K inner folds of subjects choose; then one final run
        given = list(data.sample_ids) if paths.train_samples is None else \
            sum(_split(cfg, data, paths), [])
        return run_selection(cfg, data, given, encoder, paths, ctx)
    train_ids, val_ids = _split(cfg, data, paths)
    inputs = provenance(data, train_ids, val_ids, paths.data_dir, cfg.target_column)
    if resume is not None:
        check_same_inputs(resume.provenance, inputs, paths.resume_from)
    cfg = resolve_sizes(cfg, data, pretrained=resume is not None or encoder is not None)
    setup = build_setup(cfg, data, train_ids, val_ids, **_reused(resume))
    cfg = setup.cfg
    units = subject_groups(data, cfg.group_by, val_ids)
    cfg = _margin_units(cfg, units, len(val_ids))
    warn_redundant(cfg)
    model = build_model(cfg, encoder, paths.pretrained_encoder)
    if ctx.is_main:
        write_lines(out / "train_samples.txt", train_ids)
        write_lines(out / "val_samples.txt", val_ids)
        write_text(out / "config.resolved.yaml", dump_yaml(cfg))
    objective = FinetuneObjective(cfg, setup.transform, setup.classes, setup.groups,
                                  setup.actual, setup.class_weight, dist=ctx, units=units)
    seed = cfg.train.seed
    train_loader, val_loader = build_loaders(setup.train_set, setup.val_set, cfg.data, seed, ctx)
    state = PredictorState(cfg.task, cfg.target_column,
                           setup.transform.to_dict() if setup.transform else None, setup.vocab,
                           setup.classes,
                           # the fitted start's per-subject validation losses, filled at epoch 0
                           # (the same dict object, so every checkpoint carries it; a resumed
                           # run reads it)
                           objective.reference)
    checkpoints = CheckpointCallback(out / "checkpoints", "predictor", to_dict(cfg), seed,
                                     provenance=inputs, predictor=state)
    tensorboard = FinetuneTensorBoard(out / "tensorboard", cfg)
    callbacks = [ResumeCheckpoints(checkpoints, resume, paths.resume_from), checkpoints,
                 EarlyStopping(cfg.train.patience), tensorboard, *start_only(cfg)]
    if resume is None and not cfg.group_by:
        log.warning("the abundance head's penalty is chosen on the %d validation samples; "
                    "when samples come in subjects (repeated sampling), give --group-by "
                    "SUBJECT_COLUMN so it is cross-validated by subject", len(val_ids))
    head_fit = fit_start(model, train_loader, val_loader, objective.target_loss, ctx,
                         subject_groups(data, cfg.group_by, train_ids),
                         calibrate=encoder is None and resume is None, fit=resume is None)
    if head_fit is not None:  # the fitted start is the reference a fine-tuned epoch must beat
        objective.set_reference()
    elif resume is not None:
        objective.reference.update(resume.predictor.selection_reference if resume.predictor
                                   else {})
    result = fit(model, objective, train_loader, val_loader, cfg.train, callbacks,
                 param_groups=parameter_groups(model, cfg), resume=resume, dist=ctx,
                 validate_start=head_fit is not None)
    if model.encoder_cache is not None:
        log.info("frozen base: %s", model.encoder_cache.summary())
    barrier(ctx)  # rank 0 has written best.pt before anyone reads it
    best = load_checkpoint(out / "checkpoints" / "best.pt", "predictor")
    model = predictor_from_checkpoint(best).to(ctx.device)  # a plain module (FSDP shards)
    setup.val_set.set_epoch(best.epoch)  # the best epoch's validation draws
    metrics = objective.evaluate(model, val_loader)  # every rank: predictions are gathered
    refit = None
    if cfg.abundance_head_refit and best.best_epoch == 0:
        refit = refit_abundance_head(model, train_loader, val_loader, objective.target_loss,
                                     ctx.device, ctx, subject_groups(data, cfg.group_by,
                                                                     train_ids + val_ids))
        if refit is not None:
            best = replace(best, model_state={k: v.detach().cpu()
                                              for k, v in model.state_dict().items()})
    if not ctx.is_main:
        return {"val_loss": metrics["val_loss"]}
    _write_val_predictions(out / "val_predictions.tsv", objective, setup.classes)
    save_checkpoint(out / "model.pt", best)
    summary = {"task": cfg.task, "n": len(val_ids), **_metric_values(objective),
               "val_loss": metrics["val_loss"], "best_epoch": best.best_epoch,
               "epochs_run": result.epochs_run, "history": _history(result.history),
               "seed": seed, "fold": paths.fold, "wall_time_s": time.perf_counter() - start,
               "train_samples_per_s": result.train_samples_per_s,
               "world_size": ctx.world_size, "config": to_dict(cfg),
               "abundance_head_fit": head_fit.to_dict() if head_fit else None,
               "abundance_head_refit": refit.to_dict() if refit else None}
    write_metrics(out / "metrics.json", summary)
    write_model_card(out, summary, data.info, str(paths.data_dir), paths.pretrained_encoder)
    tensorboard.write_summary(objective, summary)
    log.info("best epoch %s: %s", summary["best_epoch"],
             " ".join(f"{k}={v:.4g}" for k, v in _metric_values(objective).items()
                      if v is not None))
    return summary


def _margin_units(cfg: FinetuneConfig, units: Optional[dict], n_val: int) -> FinetuneConfig:
    """The selection margin measures noise across validation subjects; with a single one it
    cannot, so it is switched off loudly and recorded as off (``selection_se`` 0 in the
    resolved config, the model card and ``summary.md``), never stated while inactive."""
    if cfg.selection_se > 0 and units is not None and len(set(units.values())) < 2:
        log.warning("--group-by %s gives the %d validation samples a single subject, so the "
                    "selection margin (--selection-se %g) cannot measure how much validation "
                    "losses vary between subjects: it is off for this run (selection_se 0 in "
                    "its config and model card). Hold out more subjects to have it.",
                    cfg.group_by, n_val, cfg.selection_se)
        return replace(cfg, selection_se=0.0)
    return cfg


def _history(history: list) -> list:
    """Per-epoch validation numbers of this run (original-scale metrics, val_loss, lr)."""
    skip = ("seconds", "samples_per_s")
    return [{k: v for k, v in row.items() if not k.startswith("train_") and k not in skip}
            for row in history]


def _reused(resume: Optional[Checkpoint]) -> dict:
    """Vocabulary, transform and classes of a resumed run (so they stay identical)."""
    if resume is None or resume.predictor is None:
        return {}
    state = resume.predictor.target_transform
    return {"vocab": resume.predictor.categorical_vocab,
            "transform_state": transform_from_dict(state) if state else None,
            "classes": resume.predictor.classes}


def _metric_values(objective: FinetuneObjective) -> dict:
    return objective.last.metric_values()


def _write_val_predictions(path: Path, objective: FinetuneObjective, classes) -> None:
    last = objective.last
    several = last.n_passes > 1
    write_predictions(path, last.sample_ids, last.prediction, last.actual,
                      std=last.std if several else None,
                      n_passes=last.n_passes if several else None,
                      proba=last.proba, classes=classes)


__all__ = ["FinetunePaths", "run_finetune", "parameter_groups", "predictor_from_checkpoint",
           "subject_groups"]
