"""The training loop shared by pretraining and fine-tuning.

The loop knows nothing about the task: an *objective* turns a batch into a loss and a loader into
validation metrics, and *callbacks* write checkpoints, TensorBoard and stop early.

An objective has ``loss(model, batch) -> (loss_tensor, logs: dict[str, float])`` and
``evaluate(model, loader) -> dict[str, float]`` with a ``"val_loss"`` key (lower is better; it
selects the best epoch). ``evaluate`` runs under ``torch.no_grad()`` and ``model.eval()``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from aam.config import TrainConfig
from aam.training.callbacks import Callback
from aam.training.checkpoint import unwrap_model
from aam.training.device import resolve_device
from aam.training.schedule import build_optimizer, warmup_cosine
from aam.training.seeding import seed_everything, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything a callback may read (and ``stop``, which it may set)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Any
    cfg: TrainConfig
    device: torch.device
    is_main: bool = True
    epoch: int = 0  # completed epochs
    global_step: int = 0  # optimiser steps taken
    train_logs: dict = field(default_factory=dict)
    val_logs: dict = field(default_factory=dict)
    best_metric: float = math.inf
    best_epoch: int = 0
    is_best: bool = False
    stop: bool = False
    history: list = field(default_factory=list)


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


def fit(model: nn.Module, objective, train_loader: Iterable, val_loader: Iterable,
        cfg: TrainConfig, callbacks: Sequence[Callback] = (), param_groups=None,
        resume: dict | None = None, device: torch.device | None = None,
        is_main: bool = True) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs with AdamW, warmup + cosine and clipping.

    Parameters
    ----------
    model : nn.Module
        Possibly wrapped (DDP); moved to ``device``.
    objective : object
        ``loss`` and ``evaluate`` as described in the module docstring.
    train_loader, val_loader : DataLoader
        Yield ``Batch`` objects; ``len(train_loader)`` sets the schedule length.
    cfg : TrainConfig
        lr, weight_decay, warmup_fraction, grad_clip, grad_accum_steps, epochs, seed, device,
        bf16 (autocast on CUDA only), compile.
    callbacks : sequence of Callback
    param_groups : list of dict, optional
        AdamW parameter groups (each may carry its own ``lr``); default decays matrices only.
    resume : dict, optional
        A checkpoint payload from ``CheckpointCallback``: restores weights, optimizer,
        scheduler, epoch, best metric and RNG state, and continues with the next epoch.
    device : torch.device, optional
        Default: ``resolve_device(cfg.device)``.
    is_main : bool
        False on non-zero ranks (callbacks skip writing files).

    Returns
    -------
    FitResult
    """
    device = device or resolve_device(cfg.device)
    model.to(device)
    optimizer = build_optimizer(unwrap_model(model), cfg, param_groups)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    scheduler = warmup_cosine(optimizer, steps_per_epoch * cfg.epochs, cfg.warmup_fraction)
    forward_model = torch.compile(model) if cfg.compile else model
    state = TrainState(forward_model, optimizer, scheduler, objective, cfg, device, is_main)
    if resume is not None:
        _apply_resume(state, resume)
    for cb in callbacks:
        cb.on_fit_start(state)
    start, samples = time.perf_counter(), 0
    while state.epoch < cfg.epochs and not state.stop:
        samples += _run_epoch(state, train_loader, val_loader)
        for cb in callbacks:
            cb.on_epoch_end(state)
    for cb in callbacks:
        cb.on_fit_end(state)
    wall = time.perf_counter() - start
    return FitResult(state.best_metric, state.best_epoch, state.epoch, state.history, wall,
                     samples / max(wall, 1e-9), state.stop)


def _apply_resume(state: TrainState, payload: dict) -> None:
    unwrap_model(state.model).load_state_dict(payload["model_state"])
    if payload.get("optimizer_state") is not None:
        state.optimizer.load_state_dict(payload["optimizer_state"])
    if payload.get("scheduler_state") is not None:
        state.scheduler.load_state_dict(payload["scheduler_state"])
    state.epoch = int(payload["epoch"])
    state.global_step = int(payload.get("global_step", 0))
    best = payload.get("best_metric")
    state.best_metric = math.inf if best is None else float(best)
    state.best_epoch = int(payload.get("best_epoch", state.epoch))
    if payload.get("rng_state") is not None:
        set_rng_state(payload["rng_state"])
    log.info("resuming after epoch %d (best val_loss %.4g at epoch %d)", state.epoch,
             state.best_metric, state.best_epoch)


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
    state.train_logs = {k: v / max(n_samples, 1) for k, v in sums.items()}
    seconds = time.perf_counter() - start
    state.model.eval()
    with torch.no_grad(), _autocast(state):
        state.val_logs = dict(state.objective.evaluate(state.model, val_loader))
    state.epoch = epoch
    val_loss = float(state.val_logs["val_loss"])
    state.is_best = val_loss < state.best_metric
    if state.is_best:
        state.best_metric, state.best_epoch = val_loss, epoch
    lr = state.optimizer.param_groups[0]["lr"]
    record = {"epoch": epoch, **{f"train_{k}": v for k, v in state.train_logs.items()},
              **state.val_logs, "lr": lr, "seconds": seconds,
              "samples_per_s": n_samples / max(seconds, 1e-9)}
    state.history.append(record)
    log.info("epoch %d/%d train %s | %s | lr %.3g | %.1f samples/s | %.1f s%s", epoch,
             cfg.epochs, _fmt(state.train_logs), _fmt(state.val_logs), lr,
             record["samples_per_s"], seconds, " *" if state.is_best else "")
    return n_samples


def _train_one_epoch(state: TrainState, loader, epoch: int) -> tuple[dict, int]:
    cfg, model, optimizer = state.cfg, state.model, state.optimizer
    model.train()
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float)
    n_samples, n_batches = 0, len(loader)
    for i, batch in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=None, leave=False)):
        batch = batch.to(state.device)
        with _autocast(state):
            loss, logs = state.objective.loss(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at epoch {epoch}, batch {i + 1}: {logs}. "
                "Lower --lr or check the inputs."
            )
        (loss / cfg.grad_accum_steps).backward()
        for key, value in logs.items():
            sums[key] += float(value) * batch.size
        n_samples += batch.size
        if (i + 1) % cfg.grad_accum_steps == 0 or i + 1 == n_batches:
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(unwrap_model(model).parameters(), cfg.grad_clip)
            optimizer.step()
            state.scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
    return sums, n_samples


def _fmt(logs: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in logs.items())
