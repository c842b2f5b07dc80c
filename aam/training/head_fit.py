"""A fitted start for the abundance head: a penalised linear fit before fine-tuning.

The abundance head (:class:`aam.models.heads.AbundanceHead`) is linear in its last layer, so
with the pretrained encoder and the head's hidden layer fixed, its best last layer for the
training samples is a ridge (regression; least squares whatever ``loss`` says) or L2-logistic
(classification) fit over :meth:`~aam.models.heads.AbundanceHead.design` features. With random
Fourier features that is kernel ridge regression over the ASV vectors. Fitting it first is
"linear probing, then fine-tuning" (Kumar et al. 2022, *Fine-Tuning can Distort Pretrained
Features*): on a few hundred samples, gradient steps from zero stop (early) long before the
fitted linear model.

With categorical columns the same fit (same penalty) also holds their main effects
(:class:`aam.models.heads.CategoryEffects`): one-hot columns of each column's categories,
weighted as one block as loud as the head's features together (see :class:`Solver`), so the
fitted start uses the metadata and the fusion path only has to learn what is left
(interactions).

The penalty is chosen by grouped cross-validation over the training samples' subjects when
their subjects are known (``aam train --group-by``), else on the validation samples (the ones
early stopping reads); never on test samples. The fit itself sees only training samples. The
rest of the model's prediction is kept as an offset (exactly 0 at initialisation: the target
head's last layer starts at zero), so the fitted start predicts what the other heads miss. The
fitted start then stays fixed while fine-tuning, and it is epoch 0 of best-epoch selection.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from aam.models.identity import IdentityHead
from aam.training.dist_data import gather_samples
from aam.training.distributed import DistContext, gather_objects
from aam.training.penalised_fit import PENALTIES, Design, Solver, cv_losses

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class HeadFit:
    """Outcome of :func:`fit_abundance_head` (recorded in ``metrics.json``)."""

    penalty: float
    chosen_by: str  # "grouped 5-fold CV of the training samples" or "validation samples"
    cv_loss: float
    val_loss: float
    val_loss_before: float
    n_train: int
    n_val: int
    n_features: int
    n_category_features: int = 0  # one-hot columns of the categorical main effects

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def _design(model, loader: Iterable, device: torch.device, dist: DistContext) -> Design:
    head, effects = model.abundance_head, getattr(model, "category_effects", None)
    ids, features, categories, offsets, targets = [], [], [], [], []
    for batch in loader:
        batch = batch.to(device)
        out = model(batch)
        enc = out.encoder
        vectors = model.start_inputs(batch, enc) if hasattr(model, "start_inputs") \
            else enc.asv_vectors  # [B, S, D] ASV vectors, or [B, S] identity columns
        own = head(vectors, enc.count_features, enc.asv_mask)
        if effects is not None:
            own = own + effects(batch.cat_ids)
            categories.append(effects.design(batch.cat_ids).double())
        else:
            categories.append(torch.zeros(len(batch.sample_ids), 0, dtype=torch.float64,
                                          device=own.device))
        ids += list(batch.sample_ids)
        features.append(head.design(vectors, enc.count_features, enc.asv_mask).double())
        offsets.append((out.prediction - own).double())
        targets.append(batch.target)
    ids, (x, c, offset, y) = gather_samples(ids, [torch.cat(features), torch.cat(categories),
                                                  torch.cat(offsets), torch.cat(targets)], dist)
    return Design(list(ids), x.cpu(), c.cpu(), offset.cpu(), y.cpu())


def fit_abundance_head(model, train_loader: Iterable, val_loader: Iterable,
                       loss_fn: Callable[[Tensor, Tensor], Tensor], device: torch.device,
                       dist: DistContext | None = None, groups: dict | None = None,
                       snapshot: bool = True) -> HeadFit:
    """Fit the last layer of ``model.abundance_head`` and, with categorical columns, the
    ``model.category_effects`` tables on the training samples in one penalised fit, and fold
    the intercept into the target head's bias.

    The penalty is chosen by grouped 5-fold cross-validation of the training samples when
    ``groups`` (sample -> subject) is given, else on the validation samples.

    Parameters
    ----------
    model : Predictor
        On ``device``, its output scaling the identity. Whatever else it predicts (the
        target head: 0 at initialisation) is the offset of the fit; the head's and the
        category effects' current values are replaced.
    train_loader, val_loader : DataLoader
        Under torchrun each rank's share; the rows are gathered, so every rank fits the same.
    loss_fn : callable
        ``(prediction [N, K], target [N]) -> mean loss``: the fine-tuning target loss.
    groups : dict, optional
        Subject of every training sample.
    snapshot : bool
        First copy the encoder's sequence part into the model's ``start_encoder`` (when it has
        one), so the head is fitted on, and keeps reading, vectors that fine-tuning does not
        move. A refit keeps the snapshot of the first fit.

    A prediction of one value is fitted by ridge regression in closed form; class logits
    (``out_dim`` > 1) by L2-penalised logistic regression (L-BFGS).
    """
    dist = dist or DistContext()
    if snapshot and hasattr(model, "take_start_snapshot"):
        model.take_start_snapshot()
    head = model.abundance_head
    if isinstance(head, IdentityHead) and head.size == 0:  # a refit keeps the first vocabulary
        head.set_vocabulary(fed_asv_tokens((train_loader, val_loader), dist))
        log.info("abundance head: ASV identity over the %d ASVs fed in the training and "
                 "validation samples", head.size)
    was_training = model.training
    model.eval()
    train = _design(model, train_loader, device, dist)
    val = _design(model, val_loader, device, dist)
    model.train(was_training)
    n_groups = len({groups[s] for s in train.ids}) if groups else 0
    classification = train.offset.shape[1] > 1
    solver = Solver(train, loss_fn, classification)
    fits = solver.fits(PENALTIES)
    val_losses = [solver.loss(val, w, b) for w, b in fits]
    before = float(loss_fn(val.offset, val.target))
    if n_groups >= 3:
        k = min(5, n_groups)
        cv = cv_losses(train, groups, loss_fn, classification, k)
        chosen_by = f"grouped {k}-fold CV of the training samples"
    else:
        cv, chosen_by = val_losses, "validation samples"
    best = min(range(len(PENALTIES)), key=lambda i: (not math.isfinite(cv[i]), cv[i]))
    n_features, n_categories = train.features.shape[1], train.categories.shape[1]
    if not math.isfinite(cv[best]):
        log.warning("the abundance head's fitted start failed (non-finite loss); it starts at 0")
        return HeadFit(math.nan, chosen_by, math.nan, before, before, len(train.ids),
                       len(val.ids), n_features, n_categories)
    head_matrix, cat_matrix, intercept = solver.raw(*fits[best])
    model.abundance_head.set_output_matrix(head_matrix)
    if n_categories:
        model.category_effects.set_output_matrix(cat_matrix)
    with torch.no_grad():
        bias = model.output_bias()
        bias.add_(intercept.to(bias))
    fit = HeadFit(PENALTIES[best], chosen_by, cv[best], val_losses[best], before,
                  len(train.ids), len(val.ids), n_features, n_categories)
    log.info("abundance head: fitted start on %d training samples (%d features, %d category "
             "columns), L2 penalty %.3g chosen by %s: val loss %.4g (%.4g before the fit)",
             fit.n_train, n_features, n_categories, fit.penalty, chosen_by, fit.val_loss, before)
    return fit


def fed_asv_tokens(loaders: Iterable, dist: DistContext | None = None) -> Tensor:
    """Tokens [V, L] (uint8, sorted, distinct) of every ASV the ``loaders`` feed the model
    (within the token limit; under torchrun the union over every rank's share)."""
    parts = [batch.unique_tokens.to(torch.uint8).cpu().numpy()
             for loader in loaders for batch in loader]
    rows = [np.unique(np.concatenate(parts), axis=0)] if parts else []
    every = [r for part in gather_objects(rows, dist or DistContext()) for r in part]
    if not every:
        return torch.zeros(0, 0, dtype=torch.uint8)
    return torch.from_numpy(np.unique(np.concatenate(every), axis=0))


class _Chained:
    """Iterate several loaders one after the other (each pass re-iterates them)."""

    def __init__(self, *loaders: Iterable) -> None:
        self.loaders = loaders

    def __iter__(self):
        for loader in self.loaders:
            yield from loader


def refit_abundance_head(model, train_loader: Iterable, val_loader: Iterable,
                         loss_fn: Callable[[Tensor, Tensor], Tensor], device: torch.device,
                         dist: DistContext | None = None,
                         groups: dict | None = None) -> HeadFit | None:
    """After model selection chose the fitted start (epoch 0): fit the head again on the
    training and the validation samples together, the penalty cross-validated by subject over
    all of them, the way a model chosen by validation is refitted on all its data. Validation
    has done its job (the epoch); the fit now uses every subject the fold may train on (the
    inner validation holds a fifth of them), and never a test sample.

    ``model`` is the best checkpoint's predictor, whose head already holds the first fit (the
    new fit replaces it: the rest of the model is again the offset). Without ``groups`` (no
    ``--group-by``) or with fewer than 3 subjects there is no held-out choice of the penalty
    left, so the head is kept and None returned.
    """
    if not groups or len(set(groups.values())) < 3:
        log.info("abundance head: kept the fit of the training samples (a refit with the "
                 "validation samples needs --group-by to choose its penalty)")
        return None
    # the new fit replaces the head's last layer and the category effects; the first fit's
    # intercept, folded into the target head's bias, is part of the offset and absorbed by the
    # new (free) intercept
    fit = fit_abundance_head(model, _Chained(train_loader, val_loader), val_loader, loss_fn,
                             device, dist, groups, snapshot=False)
    if not math.isfinite(fit.penalty):  # the failed fit left the head as it was
        return None
    log.info("abundance head: refitted on the %d training + validation samples (the fitted "
             "start was the best epoch)", fit.n_train)
    return fit


@torch.no_grad()
def calibrate_asv_norm(model, loader: Iterable, device: torch.device,
                       dist: DistContext | None = None) -> None:
    """Set the encoder's ASV batch-norm statistics to the mean and variance of the vectors of
    every distinct ASV in ``loader``'s samples.

    Fine-tuning keeps those statistics fixed (:meth:`aam.models.predictor.Predictor.train`); a
    pretrained encoder brings its own, a new one has only the initial 0 and 1, which leave the
    nucleotide encoder's nearly parallel vectors unstandardised. Under torchrun every rank's
    vectors are gathered first, so all ranks get the statistics of all training ASVs.
    """
    norm = model.encoder.asv_norm
    was_training = model.training
    model.eval()
    vectors = {}
    for batch in loader:
        batch = batch.to(device)
        raw = model.encoder.nucleotide(batch.unique_tokens.long())[0]  # [U, D] before the norm
        for index, row in zip(batch.unique_asv_index.tolist(), raw.float().cpu()):
            vectors[index] = row
    model.train(was_training)
    for part in gather_objects(vectors, dist or DistContext()):
        vectors.update(part)
    if len(vectors) < 2:
        return
    stacked = torch.stack([vectors[i] for i in sorted(vectors)])  # one order on every rank
    norm.norm.running_mean.copy_(stacked.mean(0).to(norm.norm.running_mean))
    norm.norm.running_var.copy_(stacked.var(0).to(norm.norm.running_var))
    log.info("ASV norm: statistics of the %d distinct training ASVs (no pretrained encoder)",
             len(vectors))


__all__ = ["HeadFit", "PENALTIES", "calibrate_asv_norm", "fed_asv_tokens",
           "fit_abundance_head",
           "refit_abundance_head"]
