"""Fine-tuning callbacks: resume handling (learning-rate override, immediate checkpoint) and
TensorBoard extras (both learning rates, final scatter, hparams for the ablation view)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from aam.atomic import atomic_path
from aam.config import FinetuneConfig
from aam.training.callbacks import Callback, CheckpointCallback, TensorBoardCallback
from aam.training.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from aam.training.loop import TrainState

log = logging.getLogger(__name__)


def group_learning_rates(cfg: FinetuneConfig) -> dict[str, float]:
    """Base learning rate of each named parameter group."""
    return {"base": cfg.train.lr, "categorical": cfg.categorical_lr or cfg.train.lr}


class ResumeCallback(Callback):
    """After a resume: apply the current ``--lr``/``--categorical-lr`` (one override, logged
    once) and write the output folder's checkpoints at once.

    Parameters
    ----------
    checkpoints : CheckpointCallback
        Writes ``last.pt``/``best.pt`` of this run.
    resume : dict or None
        The resumed payload (None: this callback does nothing).
    resume_from : path or None
        Where it came from; its sibling ``best.pt`` (if any) becomes this run's ``best.pt``.
    cfg : FinetuneConfig
    """

    def __init__(self, checkpoints: CheckpointCallback, resume: Optional[dict],
                 resume_from: Optional[Path], cfg: FinetuneConfig) -> None:
        self.checkpoints, self.resume, self.cfg = checkpoints, resume, cfg
        self.resume_from = Path(resume_from) if resume_from else None

    def on_fit_start(self, state: "TrainState") -> None:
        if self.resume is None:
            return
        self._override_lr(state)
        payload = self.checkpoints.payload(state)  # every rank: FSDP gathers the full state
        if not state.is_main:
            return
        directory = self.checkpoints.directory
        save_checkpoint(directory / "last.pt", payload)
        old_best = self.resume_from.parent / "best.pt"
        new_best = directory / "best.pt"
        if old_best.is_file() and old_best.resolve() != new_best.resolve():
            with atomic_path(new_best) as tmp:
                shutil.copyfile(old_best, tmp)
        elif not new_best.is_file():
            save_checkpoint(new_best, payload)
        log.info("resumed from %s; checkpoints written to %s", self.resume_from, directory)

    def _override_lr(self, state: "TrainState") -> None:
        wanted = group_learning_rates(self.cfg)
        scheduler = state.scheduler
        changes = []
        for i, group in enumerate(state.optimizer.param_groups):
            new = wanted.get(group.get("name", "base"), self.cfg.train.lr)
            old = scheduler.base_lrs[i]
            if abs(new - old) > 1e-15:
                changes.append(f"{group.get('name', i)} {old:.3g} -> {new:.3g}")
            scheduler.base_lrs[i] = new
            group["initial_lr"] = new
            group["lr"] = new * scheduler.lr_lambdas[i](scheduler.last_epoch)
        if changes:
            log.info("learning rate overridden on resume (for every remaining step): %s",
                     ", ".join(changes))


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
                   if k in ("r2", "mae", "rmse", "accuracy", "balanced_accuracy", "f1_macro",
                            "auc", "val_loss") and v is not None}
        writer.add_hparams(hparams, metrics, run_name="hparams")
        writer.close()
