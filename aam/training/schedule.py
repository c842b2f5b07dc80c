"""Optimiser and learning-rate schedule: AdamW with linear warmup then cosine decay."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from aam.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig,
                    param_groups: Iterable[dict] | None = None) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` (each may set its own ``lr``/``weight_decay``).

    Without groups: weight decay on matrices, none on biases, norms and 1-d parameters.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    if param_groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
        param_groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
    groups = [g for g in param_groups if len(list(g["params"])) > 0]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float,
                  min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup_fraction`` of ``total_steps``, then cosine to ``min_ratio``.

    The warmup is a fraction of the run's optimiser steps, so it can never outlast the run.
    Each parameter group's own ``lr`` is scaled by the same factor.
    """
    total_steps = max(1, total_steps)
    warmup = int(warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
