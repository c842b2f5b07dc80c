"""Fine-tuning TensorBoard extras: both learning rates, the final scatter, hparams for the
ablation view, and cross-attention's per-position weights as an image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aam.config import FinetuneConfig
from aam.metrics import metric_names
from aam.training.callbacks import Callback, TensorBoardCallback

if TYPE_CHECKING:
    from aam.training.loop import TrainState

log = logging.getLogger(__name__)


def group_learning_rates(cfg: FinetuneConfig) -> dict[str, float]:
    """Base learning rate of each named parameter group."""
    return {"base": cfg.train.lr, "categorical": cfg.categorical_lr or cfg.train.lr}


class StartOnly(Callback):
    """No epoch runs (``attention_path`` off): the fitted start, validated as epoch 0, is the
    model. Set at the fit's start, so a resumed run trains no epoch either."""

    def on_fit_start(self, state: "TrainState") -> None:
        state.stop = True


def start_only(cfg: FinetuneConfig) -> list[Callback]:
    """``[StartOnly()]`` for a model without an attention path, else nothing."""
    if cfg.builds_attention_path:
        return []
    why = ("--no-attention-path" if cfg.attention_path is False else
           "no categorical columns are fused (give --attention-path to fine-tune one)")
    log.info("no attention path (%s): the model is the fitted start, no epoch runs", why)
    return [StartOnly()]


class FinetuneTensorBoard(TensorBoardCallback):
    """The standard scalars plus ``lr/<group>`` for both learning rates, and at the end the
    best epoch's metrics with the run's hparams (ablation view)."""

    def __init__(self, log_dir: str | Path, cfg: FinetuneConfig) -> None:
        super().__init__(log_dir)
        self.cfg = cfg

    def on_fit_start(self, state: "TrainState") -> None:
        super().on_fit_start(state)
        if self.writer is not None:
            rates = group_learning_rates(self.cfg)
            log.info("peak learning rates: %s",
                     ", ".join(f"{k} {v:.3g}" for k, v in rates.items()))

    def on_epoch_end(self, state: "TrainState") -> None:
        if self.writer is not None:
            for i, group in enumerate(state.optimizer.param_groups):
                self.writer.add_scalar(f"lr/{group.get('name', i)}", group["lr"], state.epoch)
        super().on_epoch_end(state)

    def write_summary(self, objective, summary: dict) -> None:
        """Final predicted-vs-actual figure (original scale) and hparams with best metrics."""
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        writer = SummaryWriter(str(self.log_dir))
        for tag, fig in objective.figures().items():
            writer.add_figure(f"best/{tag.split('/')[-1]}", fig)
        hparams = {"fusion": cfg.fusion.name if cfg.data.categorical_columns else "none",
                   "freeze_base": cfg.freeze_base, "asv_sampling": cfg.data.asv_sampling,
                   "target_transform": cfg.data.target_transform, "lr": cfg.train.lr,
                   "categorical_lr": group_learning_rates(cfg)["categorical"],
                   "count_prediction": cfg.count_prediction, "task": cfg.task,
                   "embedding_dim": cfg.model.embedding_dim,
                   "conditional_output_scaling": cfg.fusion.conditional_output_scaling or ""}
        metrics = {f"hparam/{k}": float(v) for k, v in summary.items()
                   if k in (*metric_names(cfg.task), "val_loss") and v is not None}
        writer.add_hparams(hparams, metrics, run_name="hparams")
        writer.close()
