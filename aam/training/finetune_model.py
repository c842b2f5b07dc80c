"""A fine-tuning run's model: the Predictor with its pretrained encoder, its fitted start and the
optimizer's parameter groups, built the same way by a plain ``aam train`` run and by each run
of the inner-fold selection (:mod:`aam.training.inner_folds`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Optional

from aam.config import FinetuneConfig
from aam.models.predictor import Predictor, load_encoder_state
from aam.training.checkpoint import Checkpoint
from aam.training.distributed import DistContext
from aam.training.head_fit import HeadFit, calibrate_asv_norm, fit_abundance_head
from aam.training.seeding import seed_everything

log = logging.getLogger(__name__)


def parameter_groups(model: Predictor, cfg: FinetuneConfig) -> list[dict]:
    """AdamW groups: ``base`` at ``train.lr``; ``categorical`` (category embeddings, fusion,
    output scaling) at ``categorical_lr`` (default ``train.lr``). Frozen parameters are left out."""
    cat = {id(p) for m in model.categorical_modules() for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    cat_lr = cfg.categorical_lr or cfg.train.lr
    return [
        {"name": "base", "lr": cfg.train.lr, "params": [p for p in params if id(p) not in cat]},
        {"name": "categorical", "lr": cat_lr, "params": [p for p in params if id(p) in cat]},
    ]


def build_model(cfg: FinetuneConfig, encoder: Optional[Checkpoint],
                encoder_path: Optional[Path] = None) -> Predictor:
    """A new Predictor, initialised from ``cfg.train.seed`` (not the process's RNG history),
    with the pretrained encoder's weights when ``encoder`` (its checkpoint) is given."""
    seed_everything(cfg.train.seed)
    model = Predictor(cfg)
    if encoder is not None:
        load_encoder_state(model, encoder.model_state)
        log.info("loaded the pretrained encoder from %s", encoder_path)
    return model


def fit_start(model: Predictor, train_loader: Iterable,
              val_loader: Iterable, loss_fn: Callable, ctx: DistContext,
              groups: Optional[dict], *, calibrate: bool, fit: bool) -> Optional[HeadFit]:
    """Set the ASV norm's statistics from the training samples (``calibrate``: a model trained
    from scratch), fit the start on them (``fit``; see
    :func:`~aam.training.head_fit.fit_abundance_head`, ``groups`` the subject of every training
    sample) and freeze it: fine-tuning trains the rest as a residual. Returns the fit, or None
    when none was made."""
    if calibrate:
        calibrate_asv_norm(model.to(ctx.device), train_loader, ctx.device, ctx)
    head_fit = None
    if fit:
        head_fit = fit_abundance_head(model.to(ctx.device), train_loader, val_loader, loss_fn,
                                      ctx.device, ctx, groups=groups)
    for module in model.linear_start():  # the fitted start stays as fitted (a resumed run too)
        module.requires_grad_(False)
    return head_fit
