"""Model FLOPs of one batch (``torch.utils.flop_counter``) and the machine's fp32 matmul rate."""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def training_flops(model: torch.nn.Module, objective, batch) -> float:
    """FLOPs per sample of one training step's forward + backward (matmuls and attention).

    Parameters
    ----------
    model : nn.Module
        In train mode; its gradients are cleared afterwards.
    objective : object
        ``loss(model, batch) -> (loss, logs)``.
    batch : Batch
        ``B`` samples on the model's device.

    Returns
    -------
    float
        Counted FLOPs / B (elementwise ops are not counted).
    """
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = objective.loss(model, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch.size


def inference_flops(model: torch.nn.Module, batch) -> float:
    """FLOPs per sample of one eval-mode forward pass over ``batch`` (no ASV cache)."""
    counter = FlopCounterMode(display=False)
    model.eval()
    with counter, torch.inference_mode():
        model(batch, mask_rate=0.0)
    return counter.get_total_flops() / batch.size


def matmul_rate(device: torch.device, size: int = 0, repeats: int = 5) -> dict:
    """Best-of-``repeats`` fp32 ``torch.matmul`` rate of a square ``size`` problem.

    Returns
    -------
    dict
        ``{"matmul_size", "matmul_gflops"}`` (2 n^3 FLOPs per product).
    """
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"matmul_size": size, "matmul_gflops": 2.0 * size**3 / best / 1e9}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
