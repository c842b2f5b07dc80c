"""A fitted start for the abundance head: a penalised linear fit before fine-tuning.

The abundance head (:class:`aam.models.heads.AbundanceHead`) is linear in its last layer, so
with the pretrained encoder and the head's hidden layer fixed, its best last layer for the
training samples is a ridge (regression) or L2-logistic (classification) fit over
:meth:`~aam.models.heads.AbundanceHead.design` features. Fitting it first and then fine-tuning
everything is "linear probing, then fine-tuning" (Kumar et al. 2022, *Fine-Tuning can Distort
Pretrained Features*): gradient steps start from the fitted linear model instead of from zero,
which on a few hundred samples they do not reach within the epochs early stopping allows.

The penalty is chosen on the validation samples (the ones early stopping reads; never test
samples); the fit itself sees only training samples. The rest of the model's prediction at
initialisation is kept as an offset, so the fitted head predicts what the other heads miss.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import torch
from torch import Tensor

from aam.training.dist_data import gather_samples
from aam.training.distributed import DistContext

log = logging.getLogger(__name__)

# L2 penalties tried, strongest first (each fit starts from the previous one), per feature on
# standardised features, relative to the mean loss per sample.
PENALTIES = tuple(10.0 ** (2 - k / 2) for k in range(13))  # 1e2 .. 1e-4


@dataclass(frozen=True)
class HeadFit:
    """Outcome of :func:`fit_abundance_head` (recorded in ``metrics.json``)."""

    penalty: float
    val_loss: float
    val_loss_before: float
    n_train: int
    n_val: int
    n_features: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Design:
    """Head features, the rest of the model's prediction and the target of some samples."""

    features: Tensor  # [N, P]
    offset: Tensor  # [N, K]
    target: Tensor  # [N]


@torch.no_grad()
def _design(model, loader: Iterable, device: torch.device, dist: DistContext) -> _Design:
    head = model.abundance_head
    ids, features, offsets, targets = [], [], [], []
    for batch in loader:
        batch = batch.to(device)
        out = model(batch)
        enc = out.encoder
        own = head(enc.asv_vectors, enc.count_features, enc.asv_mask)
        ids += list(batch.sample_ids)
        features.append(head.design(enc.asv_vectors, enc.count_features, enc.asv_mask).double())
        offsets.append((out.prediction - own).double())
        targets.append(batch.target)
    _, (x, offset, y) = gather_samples(ids, [torch.cat(features), torch.cat(offsets),
                                             torch.cat(targets)], dist)
    return _Design(x, offset, y)


def _standardise(x: Tensor) -> tuple[Tensor, Tensor]:
    """Column means and scales of ``x``; constant columns get an infinite scale (weight 0)."""
    mean, sd = x.mean(0), x.std(0)
    sd = torch.where(sd > 1e-8 * sd.max().clamp_min(1e-30), sd, torch.full_like(sd, math.inf))
    return mean, sd


def _fit(z: Tensor, offset: Tensor, target: Tensor, loss_fn: Callable, penalty: float,
         weight: Tensor, bias: Tensor) -> None:
    """Minimise ``loss_fn(offset + z @ weight + bias, target) + penalty * |weight|^2`` in place
    (L-BFGS, float64)."""
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(offset + z @ weight + bias, target) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)


def fit_abundance_head(model, train_loader: Iterable, val_loader: Iterable,
                       loss_fn: Callable[[Tensor, Tensor], Tensor], device: torch.device,
                       dist: DistContext | None = None) -> HeadFit:
    """Fit the last layer of ``model.abundance_head`` on the training samples, the L2 penalty
    chosen on the validation samples, and fold the intercept into the target head's bias.

    Parameters
    ----------
    model : Predictor
        At initialisation (the abundance head's output zero, output scaling the identity);
        on ``device``.
    train_loader, val_loader : DataLoader
        Under torchrun each rank's share; the rows are gathered, so every rank fits the same.
    loss_fn : callable
        ``(prediction [N, K], target [N]) -> mean loss``: the fine-tuning target loss.
    """
    dist = dist or DistContext()
    was_training = model.training
    model.eval()
    train = _design(model, train_loader, device, dist)
    val = _design(model, val_loader, device, dist)
    model.train(was_training)

    def loss64(pred: Tensor, target: Tensor) -> Tensor:
        return loss_fn(pred, target).double()

    mean, sd = _standardise(train.features)
    z_train, z_val = (train.features - mean) / sd, (val.features - mean) / sd
    k = train.offset.shape[1]
    weight = torch.zeros(z_train.shape[1], k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        before = float(loss64(val.offset, val.target))
    best = (math.inf, None, None, None)
    for penalty in PENALTIES:
        with torch.enable_grad():
            _fit(z_train, train.offset, train.target, loss64, penalty, weight, bias)
        with torch.no_grad():
            val_loss = float(loss64(val.offset + z_val @ weight + bias, val.target))
        if val_loss < best[0]:
            best = (val_loss, penalty, weight.detach().clone(), bias.detach().clone())
    val_loss, penalty, weight, bias = best
    if weight is None:  # every fit diverged: keep the zero start
        log.warning("the abundance head's fitted start failed (non-finite loss); it starts at 0")
        return HeadFit(math.nan, before, before, len(train.target), len(val.target),
                       z_train.shape[1])
    matrix = weight / sd.unsqueeze(1)  # [P, K] on the unstandardised features
    intercept = bias - (mean.unsqueeze(0) @ matrix).squeeze(0)  # [K]
    model.abundance_head.set_output_matrix(matrix)
    with torch.no_grad():
        model.head.net[-1].bias.add_(intercept.to(model.head.net[-1].bias))
    fit = HeadFit(penalty, val_loss, before, len(train.target), len(val.target),
                  z_train.shape[1])
    log.info("abundance head: fitted start on %d training samples (%d features), L2 penalty "
             "%.3g chosen on %d validation samples: val loss %.4g (%.4g before the fit)",
             fit.n_train, fit.n_features, penalty, fit.n_val, val_loss, before)
    return fit


__all__ = ["HeadFit", "PENALTIES", "fit_abundance_head"]
