"""The training loop shared by pretraining and fine-tuning.

The loop knows nothing about the task: an *objective* turns a batch into a loss and a loader into
validation metrics, and *callbacks* write checkpoints, TensorBoard and stop early.

An objective has ``loss(model, batch) -> (loss_tensor, logs: dict[str, float])`` and
``evaluate(model, loader) -> dict[str, float]`` with a ``"val_loss"`` key (lower is better; it
selects the best epoch unless a ``"selection_loss"`` key is there to select on instead).
``evaluate`` runs under ``torch.no_grad()`` and ``model.eval()``.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from aam.config import TrainConfig
from aam.errors import InputError
from aam.training import preemption
from aam.training.callbacks import Callback
from aam.training.checkpoint import Checkpoint
from aam.training.state import TrainState
from aam.training.device import resolve_device
from aam.training.distributed import (DistContext, all_reduce_sums, any_rank, clip_gradients,
                                      eval_module, evaluation_copy, load_optimizer_state,
                                      no_sync, parallel_loss, unwrap, wrap_model)
from aam.training.resume import check_optimizer_state
from aam.training.schedule import build_optimizer, warmup_cosine
from aam.training.seeding import get_rng_state, seed_everything, set_rng_state
from aam.validate import load_error_reason

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Outcome of :func:`fit`: best validation loss and epoch, per-epoch history, throughput."""

    best_metric: float
    best_epoch: int
    epochs_run: int
    history: list
    wall_s: float
    samples_per_s: float
    stopped_early: bool

    @property
    def train_samples_per_s(self) -> float | None:
        """Median training throughput of the epochs after the first (which warms up), over
        all processes; validation and checkpoints excluded."""
        rates = [row["samples_per_s"] for row in self.history if row["epoch"] > 0]
        rates = rates[1:] or rates
        return float(statistics.median(rates)) if rates else None


class TrainingDiverged(InputError):
    """The training loss became NaN or infinite; the message names the last good checkpoint."""


def fit(model: nn.Module, objective, train_loader: Iterable, val_loader: Iterable,
        cfg: TrainConfig, callbacks: Sequence[Callback] = (), param_groups=None,
        resume: Checkpoint | None = None, device: torch.device | None = None,
        is_main: bool = True, dist: DistContext | None = None,
        validate_start: bool = False) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs with AdamW, warmup + cosine and clipping.

    Parameters
    ----------
    model : nn.Module
        The plain model; moved to the device and wrapped for ``dist.strategy`` (DDP, FSDP,
        DataParallel) here.
    objective : object
        ``loss`` and ``evaluate`` as described in the module docstring.
    train_loader, val_loader : DataLoader
        Yield ``Batch`` objects; ``len(train_loader)`` sets the schedule length. Under DDP
        every rank must have the same number of training batches (``build_loaders``).
    cfg : TrainConfig
        lr, weight_decay, warmup_fraction, grad_clip, grad_accum_steps, epochs, seed, device,
        bf16 (autocast on CUDA only), compile.
    callbacks : sequence of Callback
    param_groups : list of dict, optional
        AdamW parameter groups (each may carry its own ``lr``); default decays matrices only.
    resume : Checkpoint, optional
        A checkpoint ``CheckpointCallback`` wrote: restores weights, optimizer,
        scheduler, epoch, best metric and RNG state, and continues with the next epoch.
    device : torch.device, optional
        Default: ``dist.device``, else ``resolve_device(cfg.device)``.
    is_main : bool
        False on non-zero ranks (callbacks skip writing files); ``dist`` sets it too.
    dist : DistContext, optional
        From ``distributed_session``; default: one process.
    validate_start : bool
        Evaluate the starting weights as epoch 0 (a fresh run only), so the best checkpoint can
        be the start itself when no epoch of training beats it on validation.

    Returns
    -------
    FitResult

    Raises
    ------
    TrainingDiverged
        When a training loss is NaN or infinite on any rank.
    """
    ctx = dist or DistContext(device=device or resolve_device(cfg.device))
    device = device or ctx.device
    model.to(device)
    if resume is not None:
        try:
            unwrap(model).load_state_dict(resume.model_state)
        except RuntimeError as err:  # a crafted or foreign checkpoint: one line, not a traceback
            raise InputError(f"the --resume-from checkpoint's weights do not fit this model "
                             f"({load_error_reason(err)}). Resume with the settings of the "
                             "interrupted run.") from None
    named = _named_groups(unwrap(model), cfg, param_groups)
    eval_copy = evaluation_copy(model, ctx)
    wrapped = wrap_model(model, ctx)
    optimizer = build_optimizer(unwrap(wrapped), cfg, _bind_groups(named, wrapped))
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    scheduler = warmup_cosine(optimizer, steps_per_epoch * cfg.epochs, cfg.warmup_fraction)
    forward_model = torch.compile(wrapped) if cfg.compile else wrapped
    state = TrainState(forward_model, optimizer, scheduler, objective, cfg, device,
                       is_main and ctx.is_main, dist=ctx, eval_copy=eval_copy)
    if resume is not None:
        _apply_resume(state, resume)
    for cb in callbacks:
        cb.on_fit_start(state)
    if validate_start and resume is None:  # epoch 0: the starting weights are a candidate too
        _validate(state, val_loader, 0, 0.0, 0)
        for cb in callbacks:
            cb.on_epoch_end(state)
    start, samples = time.perf_counter(), 0
    with preemption.watch():
        while state.epoch < cfg.epochs and not state.stop:
            try:
                samples += _run_epoch(state, train_loader, val_loader)
            except _StopRequested as stop:
                raise _preempted(state, callbacks, stop.reason) from None
            for cb in callbacks:
                cb.on_epoch_end(state)
            reason = preemption.requested(cfg.stop_after_minutes)  # e.g. during validation
            if any_rank(reason is not None, state.dist) and state.epoch < cfg.epochs and \
                    not state.stop:
                raise _preempted(state, callbacks, reason or "another process's stop request")
    for cb in callbacks:
        cb.on_fit_end(state)
    wall = time.perf_counter() - start
    return FitResult(state.best_metric, state.best_epoch, state.epoch, state.history, wall,
                     samples / max(wall, 1e-9), state.stop)


def _named_groups(model: nn.Module, cfg: TrainConfig, param_groups) -> list[dict]:
    """Parameter groups by parameter name, fixed before wrapping (FSDP replaces parameters)."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups
    if groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return [{**g, "params": [names[id(p)] for p in g["params"]]} for g in groups]


def _bind_groups(named: list[dict], wrapped: nn.Module) -> list[dict]:
    params = dict(unwrap(wrapped).named_parameters())
    return [{**g, "params": [params[n] for n in g["params"]]} for g in named]


def _apply_resume(state: TrainState, checkpoint: Checkpoint) -> None:
    """Optimizer, schedule, counters and RNG of a checkpoint (weights are loaded by ``fit``).

    The moments and the step count come from the checkpoint; each group's peak learning rate
    and weight decay stay those of ``cfg`` (the resumed config: the checkpoint's values unless
    the user gave new ones, see ``aam.training.resume``), for every remaining step.
    """
    configured = [(g["initial_lr"], g["weight_decay"]) for g in state.optimizer.param_groups]
    if checkpoint.optimizer_state is not None:
        check_optimizer_state(unwrap(state.model), state.optimizer, checkpoint.optimizer_state,
                              checkpoint.source or "the checkpoint")
        load_optimizer_state(state.model, state.optimizer, checkpoint.optimizer_state)
    if checkpoint.scheduler_state is not None:
        state.scheduler.load_state_dict(checkpoint.scheduler_state)
    scheduler = state.scheduler
    for i, (group, (lr, decay)) in enumerate(zip(state.optimizer.param_groups, configured)):
        scheduler.base_lrs[i] = group["initial_lr"] = lr
        group["weight_decay"] = decay
        group["lr"] = lr * scheduler.lr_lambdas[i](scheduler.last_epoch)
    state.epoch = checkpoint.epoch
    state.global_step = checkpoint.global_step
    state.resume_batch = checkpoint.resume_batch
    if state.resume_batch:
        state.partial_sums = dict(checkpoint.partial_sums)
        state.partial_samples = checkpoint.partial_samples
        state.resume_rng = checkpoint.rng_state
    best = checkpoint.best_metric
    state.best_metric = math.inf if best is None else best
    state.best_epoch = state.epoch if checkpoint.best_epoch is None else checkpoint.best_epoch
    if checkpoint.rng_state is not None:
        set_rng_state(checkpoint.rng_state)
    within = (f", inside epoch {state.epoch + 1} after batch {state.resume_batch}"
              if state.resume_batch else "")
    log.info("resuming after epoch %d%s (best selection loss %.4g at epoch %d)", state.epoch,
             within, state.best_metric, state.best_epoch)


def _autocast(state: TrainState):
    if state.device.type == "cuda" and state.cfg.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _prepare_epoch(loader, seed: int, epoch: int) -> None:
    """Reseed everything from (seed, epoch): a resumed run replays the same shuffles and masks."""
    seed_everything(seed + epoch)
    sampler = getattr(loader, "sampler", None)
    for owner in (sampler, getattr(loader, "dataset", None)):
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)
    for gen in (getattr(loader, "generator", None), getattr(sampler, "generator", None)):
        if isinstance(gen, torch.Generator):
            gen.manual_seed(seed + epoch)


def _run_epoch(state: TrainState, train_loader, val_loader) -> int:
    cfg, epoch = state.cfg, state.epoch + 1
    _prepare_epoch(train_loader, cfg.seed, epoch)
    start = time.perf_counter()
    sums, n_samples = _train_one_epoch(state, train_loader, epoch)
    totals = all_reduce_sums({**sums, _N: n_samples}, state.dist)  # sums and counts, then divide
    n_samples = int(totals.pop(_N))
    state.train_logs = {k: totals[k] / max(n_samples, 1) for k in sums}
    seconds = time.perf_counter() - start
    _validate(state, val_loader, epoch, seconds, n_samples)
    return n_samples


def _validate(state: TrainState, val_loader, epoch: int, seconds: float, n_samples: int) -> None:
    """Evaluate after ``epoch`` (0: the starting weights), track the best and log one line."""
    cfg = state.cfg
    set_epoch = getattr(getattr(val_loader, "dataset", None), "set_epoch", None)
    if set_epoch is not None:  # random ASV draws of validation differ per epoch too
        set_epoch(epoch)
    state.model.eval()
    evaluating = eval_module(state.model, state.dist, state.eval_copy)
    with torch.no_grad(), _autocast(state), evaluating as module:
        state.val_logs = dict(state.objective.evaluate(module, val_loader))
    state.epoch = epoch
    # an objective may select on a loss other than val_loss (e.g. one with a margin)
    loss = float(state.val_logs.get("selection_loss", state.val_logs["val_loss"]))
    state.is_best = loss < state.best_metric
    if state.is_best:
        state.best_metric, state.best_epoch = loss, epoch
    lr = state.optimizer.param_groups[0]["lr"]
    record = {"epoch": epoch, **{f"train_{k}": v for k, v in state.train_logs.items()},
              **state.val_logs, "lr": lr, "seconds": seconds,
              "samples_per_s": n_samples / max(seconds, 1e-9)}
    state.history.append(record)
    log.info("epoch %d/%d train %s | %s | lr %.3g | %.1f samples/s | %.1f s%s", epoch,
             cfg.epochs, _fmt(state.train_logs), _fmt(state.val_logs), lr,
             record["samples_per_s"], seconds, " *" if state.is_best else "")


_N = "\0n_samples"


class _StopRequested(Exception):
    """A stop was asked for; raised at a step boundary (every rank agrees on it)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _preempted(state: TrainState, callbacks, reason: str) -> preemption.Preempted:
    """Write the resumable mid-epoch checkpoint (callbacks' ``on_preempt``) and say where."""
    for cb in callbacks:
        hook = getattr(cb, "on_preempt", None)
        if hook is not None:
            hook(state)
    path = state.last_checkpoint[0] if state.last_checkpoint else None
    log.warning("stopped in epoch %d after batch %d of it (step %d)", state.epoch + 1,
                state.resume_batch, state.global_step)
    return preemption.Preempted(reason, path, state.epoch + 1, state.resume_batch)


def _train_one_epoch(state: TrainState, loader, epoch: int) -> tuple[dict, int]:
    cfg, model, optimizer = state.cfg, state.model, state.optimizer
    model.train()
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float, state.partial_sums)
    n_samples, n_batches, skip = state.partial_samples, len(loader), state.resume_batch
    for i, batch in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=None, leave=False)):
        if i < skip:  # done before a preemption: the same batches (same seeds), not trained again
            if i + 1 == skip and state.resume_rng is not None:
                set_rng_state(state.resume_rng)  # dropout etc. continue where they stopped
            continue
        batch = batch.to(state.device)
        stepping = (i + 1) % cfg.grad_accum_steps == 0 or i + 1 == n_batches
        with no_sync(model, skip=not stepping):
            with _autocast(state):
                loss, logs = parallel_loss(state.objective, model, batch, state.dist)
            if any_rank(not bool(torch.isfinite(loss.detach())), state.dist):
                raise TrainingDiverged(_diverged_message(state, epoch, float(loss.detach())))
            (loss / cfg.grad_accum_steps).backward()
        for key, value in logs.items():
            sums[key] += float(value) * batch.size
        n_samples += batch.size
        if stepping:
            if cfg.grad_clip > 0:
                clip_gradients(model, cfg.grad_clip)
            optimizer.step()
            state.scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            preemption.test_hook(state.global_step)
            reason = preemption.requested(cfg.stop_after_minutes)
            if any_rank(reason is not None, state.dist) and i + 1 < n_batches:
                state.resume_batch, state.partial_samples = i + 1, n_samples
                state.partial_sums, state.resume_rng = dict(sums), get_rng_state()
                raise _StopRequested(reason or "another process's stop request")
    state.resume_batch, state.partial_sums, state.partial_samples = 0, {}, 0
    state.resume_rng = None
    return sums, n_samples


def _diverged_message(state: TrainState, epoch: int, loss: float) -> str:
    where = f"training diverged: non-finite loss at epoch {epoch}, step {state.global_step + 1}"
    if not math.isfinite(loss):
        where += f" (loss={loss})"
    if state.last_checkpoint is None:
        return (f"{where}. No checkpoint was written yet; start again with a lower --lr "
                "(or check the inputs).")
    path, good_epoch = state.last_checkpoint
    return (f"{where}. The last good checkpoint is {path} (epoch {good_epoch}); resume from it "
            "with a lower --lr.")


def _fmt(logs: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in logs.items())
