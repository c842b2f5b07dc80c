"""Callbacks the training loop calls after each epoch: checkpoints, early stopping, TensorBoard.

A callback sees the loop's ``TrainState`` (``aam.training.state``): model, optimizer, scheduler,
objective, epoch, global_step, train_logs, val_logs, best_metric, best_epoch, is_best, stop.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from aam.atomic import atomic_path
from aam.training.checkpoint import Checkpoint, PredictorState, save_checkpoint
from aam.training.distributed import full_state_dict, optimizer_state_dict
from aam.training.seeding import get_rng_state

if TYPE_CHECKING:
    from aam.training.state import TrainState

log = logging.getLogger(__name__)


class Callback:
    """Base class: override the hooks you need (all no-ops here)."""

    def on_fit_start(self, state: "TrainState") -> None:
        """Called once, after a resume is applied and before the first epoch."""

    def on_epoch_end(self, state: "TrainState") -> None:
        """Called after validation and best-metric bookkeeping of every epoch."""

    def on_fit_end(self, state: "TrainState") -> None:
        """Called once when training stops (also after early stopping)."""


class CheckpointCallback(Callback):
    """Write ``DIR/last.pt`` every epoch and ``DIR/best.pt`` when validation loss improves.

    Parameters
    ----------
    directory : path
        Folder for ``last.pt`` and ``best.pt``.
    kind : {"encoder", "predictor"}
    config : dict
        Plain dict of the resolved stage config.
    seed : int
    provenance : dict, optional
        Fingerprints of the data the run reads.
    predictor : PredictorState, optional
        The predictor kind's state (target transform, vocabulary, classes, ...); kept by
        reference, so what the run adds to it later is in every later checkpoint.
    """

    def __init__(self, directory: str | Path, kind: str, config: dict, seed: int,
                 provenance: dict | None = None,
                 predictor: PredictorState | None = None) -> None:
        self.directory = Path(directory)
        self.kind, self.config, self.seed = kind, config, seed
        self.provenance, self.predictor = provenance, predictor

    def payload(self, state: "TrainState") -> Checkpoint:
        """The full resumable checkpoint of the current state.

        Under FSDP every rank must call this (the full state is gathered to rank 0).
        """
        return Checkpoint(
            self.kind, self.config, full_state_dict(state.model, state.dist),
            optimizer_state=optimizer_state_dict(state.model, state.optimizer, state.dist),
            scheduler_state=state.scheduler.state_dict(), epoch=state.epoch,
            best_metric=state.best_metric, seed=self.seed,
            rng_state=state.resume_rng if state.resume_batch else get_rng_state(),
            best_epoch=state.best_epoch, global_step=state.global_step,
            provenance=self.provenance, predictor=self.predictor, **_position(state),
        )

    def on_preempt(self, state: "TrainState") -> None:
        """A stop signal: write ``last.pt`` at the current step, marked as preempted so the
        same command continues from it (:func:`aam.training.preemption.preempted_checkpoint`)."""
        payload = self.payload(state)  # every rank: FSDP gathers the full state
        if state.is_main:
            save_checkpoint(self.directory / "last.pt", replace(payload, preempted=True))
        state.last_checkpoint = (self.directory / "last.pt", state.epoch)

    def on_fit_start(self, state: "TrainState") -> None:
        last = self.directory / "last.pt"
        if state.epoch > 0 and last.is_file():  # resumed: that file is the last good state
            state.last_checkpoint = (last, state.epoch)

    def on_epoch_end(self, state: "TrainState") -> None:
        """Rank 0 writes; every rank records where the last good checkpoint is."""
        if not (state.is_main or state.dist.shards_state):
            state.last_checkpoint = (self.directory / "last.pt", state.epoch)
            return
        payload = self.payload(state)
        if state.is_main:
            save_checkpoint(self.directory / "last.pt", payload)
            if state.is_best:
                save_checkpoint(self.directory / "best.pt", payload)
        state.last_checkpoint = (self.directory / "last.pt", state.epoch)


def _position(state: "TrainState") -> dict:
    """Where inside the next epoch a preempted run stopped (nothing at an epoch's end); the RNG
    state of that moment is the payload's ``rng_state`` then."""
    if not state.resume_batch:
        return {}
    return {"resume_batch": state.resume_batch, "partial_samples": state.partial_samples,
            "partial_sums": {k: float(v) for k, v in state.partial_sums.items()}}


class ResumeCheckpoints(Callback):
    """After a resume, write this run's ``last.pt`` and ``best.pt`` at once (the same or a new
    output folder), so the folder is complete even when no epoch is left to run.

    The resumed checkpoint's sibling ``best.pt`` (if any) becomes this run's ``best.pt``.
    """

    def __init__(self, checkpoints: CheckpointCallback, resume: Checkpoint | None,
                 resume_from: str | Path | None) -> None:
        self.checkpoints, self.resume = checkpoints, resume
        self.resume_from = Path(resume_from) if resume_from else None

    def on_fit_start(self, state: "TrainState") -> None:
        if self.resume is None:
            return
        payload = self.checkpoints.payload(state)  # every rank: FSDP gathers the full state
        if not state.is_main:
            return
        if self.resume.preempted:  # still the preempted state until the next epoch ends
            payload.preempted = True
        directory = self.checkpoints.directory
        save_checkpoint(directory / "last.pt", payload)
        old_best = self.resume_from.parent / "best.pt" if self.resume_from else None
        new_best = directory / "best.pt"
        if old_best is not None and old_best.is_file() and \
                old_best.resolve() != new_best.resolve():
            with atomic_path(new_best) as tmp:
                shutil.copyfile(old_best, tmp)
        elif not new_best.is_file():
            save_checkpoint(new_best, payload)
        log.info("resumed from %s; checkpoints written to %s", self.resume_from, directory)


class EarlyStopping(Callback):
    """Stop when the selection loss (``val_loss``, or the objective's ``selection_loss``) has
    not improved for ``patience`` epochs (0 = never)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, state: "TrainState") -> None:
        if self.patience and state.epoch - state.best_epoch >= self.patience:
            log.info("early stopping: no improvement in the selection loss for %d epochs "
                     "(best %.4g at epoch %d)", self.patience, state.best_metric,
                     state.best_epoch)
            state.stop = True


class TensorBoardCallback(Callback):
    """Scalars (train/*, val/*, lr) every epoch, plus the objective's figures when it has them.

    An objective may define ``figures() -> dict[str, matplotlib.figure.Figure]`` built from its
    last evaluation (e.g. predicted vs true sample distances).
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_fit_start(self, state: "TrainState") -> None:
        if state.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, state: "TrainState") -> None:
        if self.writer is None:
            return
        for key, value in state.train_logs.items():
            self.writer.add_scalar(f"train/{key}", value, state.epoch)
        for key, value in state.val_logs.items():
            self.writer.add_scalar(f"val/{key.removeprefix('val_')}", value, state.epoch)
        self.writer.add_scalar("lr", state.optimizer.param_groups[0]["lr"], state.epoch)
        figures = getattr(state.objective, "figures", None)
        if figures is not None:
            for tag, fig in figures().items():
                self.writer.add_figure(tag, fig, state.epoch)
        self.writer.flush()

    def on_fit_end(self, state: "TrainState") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
