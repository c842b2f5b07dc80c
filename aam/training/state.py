"""What the training loop shares with its callbacks: :class:`TrainState` (its own module, so
``aam.training.loop`` and ``aam.training.callbacks`` both import it and not each other)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from aam.config import TrainConfig
from aam.training.distributed import DistContext


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
    dist: DistContext = field(default_factory=DistContext)
    last_checkpoint: tuple | None = None  # (path, epoch) of the newest last.pt, set by callbacks
    eval_copy: nn.Module | None = None  # FSDP: the plain module validation runs on
    # position inside epoch ``epoch + 1`` (batches done, their summed logs, their samples):
    # non-zero only between a preemption and the end of the epoch it interrupted
    resume_batch: int = 0
    partial_sums: dict = field(default_factory=dict)
    partial_samples: int = 0
    resume_rng: dict | None = None  # RNG state at that position (restored after skipping)
