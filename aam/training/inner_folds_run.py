"""The runs of ``aam train --selection-folds K`` (:mod:`aam.training.inner_folds` has the rule):
K inner-fold runs that score every epoch out of fold, the final run on every given sample, and
the outputs of ``aam train`` for the chosen model."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from tqdm import tqdm

from aam.atomic import write_lines, write_text
from aam.config import FinetuneConfig, dump_yaml, to_dict
from aam.data.prepared import PreparedData
from aam.data.targets import fit_classes
from aam.model_card import write_model_card
from aam.predictions import Predictions, write_metrics, write_predictions
from aam.provenance import provenance
from aam.training.callbacks import Callback, CheckpointCallback
from aam.training.checkpoint import Checkpoint, PredictorState, save_checkpoint
from aam.training.dist_data import build_loaders
from aam.training.distributed import DistContext
from aam.training.finetune_data import build_setup, resolve_sizes, subject_groups
from aam.training.finetune_model import build_model, fit_start, parameter_groups
from aam.training.finetune_objective import FinetuneObjective
from aam.training.inner_folds import assign_folds, choose_epoch, pool_losses
from aam.training.loop import fit
from aam.training.preemption import Preempted

log = logging.getLogger(__name__)

# loggers whose lines are prefixed with the inner fold they belong to
_RUN_LOGGERS = ("aam.training.loop", "aam.training.head_fit", "aam.training.finetune_data",
                "aam.training.finetune_model")


@dataclass(frozen=True)
class _Shared:
    """What every run of one selection shares."""

    cfg: FinetuneConfig
    data: PreparedData
    encoder: Optional[Checkpoint]  # the pretrained encoder's checkpoint
    encoder_path: Optional[Path]
    ctx: DistContext
    classes: Optional[list[str]]  # classification: fitted on every given sample


@dataclass
class _Run:
    """One training run: its setup, the start's fit, the loop's result and what it recorded."""

    setup: Any
    head_fit: Any
    result: Any
    recorder: "_Recorder"


class _Recorder(Callback):
    """Keep each epoch's per-sample losses and predictions; with ``stop_at``, stop after that
    many epochs and keep that state's checkpoint payload."""

    def __init__(self, checkpoints: Optional[CheckpointCallback] = None,
                 stop_at: Optional[int] = None) -> None:
        self.checkpoints, self.stop_at = checkpoints, stop_at
        self.losses: dict[int, dict[str, float]] = {}
        self.predictions: dict[int, Predictions] = {}
        self.payload: Optional[Checkpoint] = None

    def on_epoch_end(self, state) -> None:
        self.losses[state.epoch] = dict(state.objective.sample_losses)
        self.predictions[state.epoch] = state.objective.last
        if self.stop_at is not None and state.epoch >= self.stop_at:
            assert self.checkpoints is not None
            self.payload = self.checkpoints.payload(state)  # every rank: FSDP gathers
            state.stop = True


@contextlib.contextmanager
def _prefixed(prefix: str) -> Iterator[None]:
    """Lines of the training loop and the start's fit begin with ``prefix`` in this block."""

    class _Prefix(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = f"{prefix}: {record.msg}"
            return True

    loggers, prefix_filter = [logging.getLogger(n) for n in _RUN_LOGGERS], _Prefix()
    for one in loggers:
        one.addFilter(prefix_filter)
    try:
        yield
    finally:
        for one in loggers:
            one.removeFilter(prefix_filter)


def _train(shared: _Shared, train_ids: list[str], val_ids: list[str], where: str,
           stop_at: Optional[int] = None, inputs: Optional[dict] = None) -> _Run:
    """Fit the start on ``train_ids``, fine-tune, and score every epoch on ``val_ids``; with
    ``stop_at``, stop after that many epochs and keep that state's checkpoint."""
    data, ctx, encoder = shared.data, shared.ctx, shared.encoder
    setup = build_setup(shared.cfg, data, train_ids, val_ids, classes=shared.classes)
    cfg = setup.cfg
    model = build_model(cfg, encoder, shared.encoder_path)
    objective = FinetuneObjective(replace(cfg, selection_se=0.0), setup.transform,
                                  setup.classes, setup.groups, setup.actual,
                                  setup.class_weight, dist=ctx)
    train_loader, val_loader = build_loaders(setup.train_set, setup.val_set, cfg.data,
                                             cfg.train.seed, ctx)
    # not a callback (it would write files): the final run takes its checkpoint from it
    checkpoints = CheckpointCallback(Path("."), "predictor", to_dict(cfg), cfg.train.seed,
                                     provenance=inputs,
                                     predictor=_predictor_state(setup))
    recorder = _Recorder(checkpoints, stop_at)
    head_fit = fit_start(model, train_loader, val_loader, objective.target_loss, ctx,
                         subject_groups(data, cfg.group_by, train_ids),
                         calibrate=encoder is None, fit=True)
    try:
        result = fit(model, objective, train_loader, val_loader, cfg.train, [recorder],
                     param_groups=parameter_groups(model, cfg), dist=ctx, validate_start=True)
    except Preempted as stop:
        raise SelectionStopped(stop, where) from None
    return _Run(setup, head_fit, result, recorder)


def _predictor_state(setup) -> PredictorState:
    """What ``aam predict`` reads besides the weights."""
    transform = setup.transform.to_dict() if setup.transform else None
    return PredictorState(setup.cfg.task, setup.cfg.target_column, transform, setup.vocab,
                          setup.classes)


class SelectionStopped(Preempted):
    """A stop signal (or the time limit) during ``--selection-folds``: no checkpoint is kept
    and nothing is written; the same command starts the selection over (exit code 75)."""

    def __init__(self, stop: Preempted, where: str) -> None:
        Exception.__init__(self, f"{str(stop).split(';')[0]} of {where}; --selection-folds "
                           "runs keep no checkpoint, so nothing was written: run the same "
                           "command again to start the selection over")
        self.checkpoint = None


def _out_of_fold(runs: list[_Run], epoch: int) -> Predictions:
    """The folds' predictions of ``epoch`` as one table (each given sample once)."""
    parts = [r.recorder.predictions[epoch] for r in runs]

    def joined(name: str):
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return Predictions(sum((p.sample_ids for p in parts), []), joined("prediction"),
                       joined("actual"), parts[0].n_passes, joined("std"), joined("proba"),
                       parts[0].classes)


def run_selection(cfg: FinetuneConfig, data: PreparedData, given: list[str],
                  encoder: Optional[Checkpoint], paths, ctx: DistContext) -> dict:
    """Choose between the fitted start and fine-tuning on ``cfg.selection_folds`` inner folds
    of ``given``'s subjects, train the final model on all of ``given`` and write the outputs
    of ``aam train`` (``paths``: its :class:`~aam.training.finetune.FinetunePaths`).

    Raises
    ------
    InputError
        For fewer subjects than folds, and as ``aam train`` does for its inputs.
    SelectionStopped
        On a stop signal or the time limit (nothing is written).
    """
    start, k, out = time.perf_counter(), cfg.selection_folds, Path(paths.output_dir)
    units = subject_groups(data, cfg.group_by, given) or {}
    folds = assign_folds(units, k, cfg.train.seed)
    shared = _shared(cfg, data, given, encoder, paths.pretrained_encoder, ctx)
    fewest = len(set(units.values())) - max(len({units[s] for s in f}) for f in folds)
    if fewest < 3:
        log.warning("an inner fold trains on %d subjects, too few for the fitted start's "
                    "grouped CV (3): its penalty is then chosen on the held-out fold itself. "
                    "Give more subjects or fewer --selection-folds", fewest)
    cfg = shared.cfg
    log.info("selection on %d inner folds of --group-by %s: %d samples of %d subjects; %d "
             "trainings of %d epochs, then the final model", k, cfg.group_by, len(given),
             len(set(units.values())), k, cfg.train.epochs)
    runs = []
    for j in tqdm(range(k), desc="inner folds", disable=None):
        held, where = set(folds[j]), f"inner fold {j + 1}/{k}"
        with _prefixed(where):
            runs.append(_train(shared, [s for s in given if s not in held], folds[j], where))
    subject_losses, fold_losses = pool_losses([r.recorder.losses for r in runs], units)
    choice = choose_epoch(subject_losses, cfg.selection_se)
    log.info("inner folds: lowest pooled loss at epoch %d (%+.4g vs the fitted start, SE %.3g, "
             "margin %g SE): %s, epoch %d. The final model's per-epoch losses below are on its "
             "own training samples (none is held out)", choice.lowest_epoch, choice.difference,
             choice.standard_error, cfg.selection_se, choice.decision, choice.epoch)
    inputs = provenance(data, given, given, paths.data_dir, cfg.target_column)
    with _prefixed(f"final model, {len(given)} samples"):
        final = _train(shared, given, given, "the final model", stop_at=choice.epoch,
                       inputs=inputs)
    assert final.recorder.payload is not None
    payload = replace(final.recorder.payload, best_epoch=choice.epoch)
    if not ctx.is_main:
        return {"val_loss": choice.pooled_loss[choice.epoch]}
    record = {"k": k, "group_by": cfg.group_by, "n_samples": len(given),
              "n_subjects": len(set(units.values())),
              "subjects": [sorted({units[s] for s in f}) for f in folds],
              "fold_losses": fold_losses, "chosen_epoch": choice.epoch, **choice.to_dict()}
    record.pop("epoch")
    summary = _write(out, final, _out_of_fold(runs, choice.epoch), record, given, payload, {
        "seed": cfg.train.seed, "fold": paths.fold, "wall_time_s": time.perf_counter() - start,
        "world_size": ctx.world_size, "history": _history(runs, subject_losses)})
    write_model_card(out, summary, data.info, str(paths.data_dir), paths.pretrained_encoder)
    return summary


def _shared(cfg: FinetuneConfig, data: PreparedData, given: list[str],
            encoder: Optional[Checkpoint], encoder_path: Optional[Path],
            ctx: DistContext) -> _Shared:
    """The runs' common settings: sizes from the data, classes from every given sample, no
    early stopping (every inner run scores every epoch)."""
    cfg = resolve_sizes(cfg, data, pretrained=encoder is not None)
    if cfg.train.patience:
        log.warning("--patience %d is ignored with --selection-folds: every inner run scores "
                    "all %d epochs", cfg.train.patience, cfg.train.epochs)
    cfg = replace(cfg, train=replace(cfg.train, patience=0))
    classes = fit_classes(data.metadata, cfg.target_column, given) \
        if cfg.task == "classification" else None
    return _Shared(cfg, data, encoder, encoder_path, ctx, classes)


def _history(runs: list[_Run], subject_losses: list[dict]) -> list[dict]:
    """Per epoch: the pooled loss and the out-of-fold metrics of every given sample."""
    return [{"epoch": e, "val_loss": float(np.mean(list(losses.values()))),
             **_out_of_fold(runs, e).metric_values()}
            for e, losses in enumerate(subject_losses)]


def _write(out: Path, final: _Run, oof: Predictions, record: dict, given: list[str],
           payload: Checkpoint, extra: dict) -> dict:
    """model.pt, the sample lists, out-of-fold predictions, config and metrics.json."""
    cfg = final.setup.cfg
    write_lines(out / "train_samples.txt", sorted(given))
    write_lines(out / "val_samples.txt", sorted(given))  # every one scored out of fold
    write_text(out / "config.resolved.yaml", dump_yaml(cfg))
    several = oof.n_passes > 1
    write_predictions(out / "val_predictions.tsv", oof.sample_ids, oof.prediction, oof.actual,
                      std=oof.std if several else None,
                      n_passes=oof.n_passes if several else None, proba=oof.proba,
                      classes=final.setup.classes)
    save_checkpoint(out / "model.pt", payload)
    _tensorboard(out / "tensorboard", record)
    summary = {"task": cfg.task, "n": len(given), **oof.metric_values(),
               "val_loss": record["pooled_loss"][record["chosen_epoch"]],
               "best_epoch": record["chosen_epoch"], "epochs_run": record["chosen_epoch"],
               "train_samples_per_s": final.result.train_samples_per_s, **extra,
               "config": to_dict(cfg),
               "abundance_head_fit": final.head_fit.to_dict() if final.head_fit else None,
               "abundance_head_refit": None, "selection_folds": record}
    write_metrics(out / "metrics.json", summary)
    return summary


def _tensorboard(log_dir: Path, record: dict) -> None:
    """``selection/pooled_loss`` and ``selection/fold_<k>_loss`` per epoch."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    for epoch, loss in enumerate(record["pooled_loss"]):
        writer.add_scalar("selection/pooled_loss", loss, epoch)
        for k, losses in enumerate(record["fold_losses"], 1):
            writer.add_scalar(f"selection/fold_{k}_loss", losses[epoch], epoch)
    writer.close()


__all__ = ["SelectionStopped", "run_selection"]
