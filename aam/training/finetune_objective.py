"""The fine-tuning objective: target loss (+ count and nucleotide losses) and evaluation.

Evaluation reports the target's validation loss (the checkpoint-selection metric, on the model
scale) and metrics on the original target scale.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aam.config import FinetuneConfig
from aam.data.batch import Batch
from aam.data.targets import TargetTransform
from aam.models.heads import count_loss
from aam.models.predictor import start_mode
from aam.predictions import Predictions, from_passes
from aam.training.dist_data import gather_samples
from aam.training.distributed import DistContext, gather_objects

log = logging.getLogger(__name__)

REGRESSION_LOSSES = {
    "mse": F.mse_loss,
    "mae": F.l1_loss,
    "huber": F.smooth_l1_loss,
}


class FinetuneObjective:
    """``loss(model, batch)`` for training and ``evaluate(model, loader)`` for validation.

    Parameters
    ----------
    cfg : FinetuneConfig
    transform : TargetTransform or None
        Fitted target transform (regression); predictions are inverted with it.
    classes : sequence of str or None
        Class labels (classification), index = class id.
    groups : dict[str, tuple]
        ``normalize_by`` group tuple of each sample (for the inverse of zscore-category).
    actual : dict[str, float or str]
        Original-scale target (or label) of each validation sample.
    class_weight : FloatTensor [K], optional
        Cross-entropy weights.
    dist : DistContext, optional
        Under torchrun each rank predicts its validation shard; the rows are gathered (each
        sample once) before aggregating, so every rank returns the one-process result.
    units : dict[str, str], optional
        Validation sample -> subject, the unit of the paired comparison with the reference
        (default: each sample is its own unit).

    Attributes
    ----------
    last : Predictions or None
        The last evaluation's original-scale predictions.
    sample_losses : dict[str, float]
        The last evaluation's loss of each validation sample (model scale): what
        ``aam train --selection-folds`` pools by subject.
    reference : dict[str, float]
        Per-unit validation losses of the reference model (the fitted start), filled by the
        evaluation after :meth:`set_reference` and kept in the checkpoints (a resumed run
        reads it back). While it is filled and ``cfg.selection_se`` > 0, ``evaluate`` also
        returns ``selection_loss``: the validation loss plus ``selection_se`` standard errors
        of its per-unit difference to the reference, the loss the training loop selects on.
    """

    def __init__(self, cfg: FinetuneConfig, transform: Optional[TargetTransform],
                 classes: Optional[Sequence[str]], groups: dict, actual: dict,
                 class_weight: Optional[Tensor] = None,
                 dist: Optional[DistContext] = None,
                 units: Optional[dict] = None) -> None:
        self.cfg = cfg
        self.transform = transform
        self.classes = list(classes) if classes else None
        self.groups = groups
        self.actual = actual
        self.class_weight = class_weight
        self.dist = dist or DistContext()
        # the masked-nucleotide loss trains the nucleotide encoder: not when it is frozen (a
        # frozen base, or the fitted start's frozen sequence encoder, whose input masking would
        # move the vectors the fitted head reads)
        train_base = (not cfg.freeze_base and cfg.nucleotide_loss_weight > 0
                      and start_mode(cfg) != "frozen")
        self.mask_rate = cfg.nucleotide_mask_rate if train_base else 0.0
        self.last: Optional[Predictions] = None
        self.sample_losses: dict[str, float] = {}  # validation sample -> loss, last evaluation
        self.units = units or {}
        self.reference: dict[str, float] = {}
        self._take_reference = False
        self.attention_map: Optional[np.ndarray] = None  # [heads, tokens], see _one_pass

    def target_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Loss of ``prediction`` [B, out_dim] against ``target`` [B] (model scale), in float32
        (float64 when ``prediction`` is float64)."""
        dtype = torch.float64 if prediction.dtype == torch.float64 else torch.float32
        if self.classes:
            weight = None
            if self.class_weight is not None:
                weight = self.class_weight.to(prediction.device, dtype)
            return F.cross_entropy(prediction.to(dtype), target.long(), weight=weight)
        return REGRESSION_LOSSES[self.cfg.loss](prediction[:, 0].to(dtype), target.to(dtype))

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Training loss: target loss + count_penalty * count loss (+ nucleotide loss)."""
        out = model(batch, mask_rate=self.mask_rate)
        target = self.target_loss(out.prediction, batch.target)
        total = target
        logs = {"target_loss": float(target.detach())}
        if out.count_pred is not None:
            counts = count_loss(out.count_pred, batch.counts, batch.asv_mask)
            total = total + self.cfg.count_penalty * counts
            logs["count_loss"] = float(counts.detach())
        if out.encoder.nuc_logits is not None:
            nuc = F.cross_entropy(out.encoder.nuc_logits.flatten(0, 1).float(),
                                  out.encoder.nuc_targets.flatten(), ignore_index=-100)
            total = total + self.cfg.nucleotide_loss_weight * nuc
            logs["nucleotide_loss"] = float(nuc.detach())
        logs.update(fusion_statistics(out.extras, out.attention))
        return total, logs

    def set_reference(self) -> None:
        """The next evaluation is the reference (the fitted start) of later selection losses."""
        self.reference.clear()
        self._take_reference = True

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader) -> dict[str, float]:
        """Target validation loss (``val_loss``) and original-scale metrics.

        With ``val_prediction_passes`` > 1 and random ASV sampling, each sample's prediction is
        the mean over that many passes (a fresh ASV draw each). The result is kept in ``last``.
        """
        was_training = model.training
        model.eval()
        passes = self.cfg.val_prediction_passes
        if self.cfg.data.asv_sampling != "random":
            passes = 1
        outputs = [self._one_pass(model, loader, p) for p in range(passes)]
        model.train(was_training)
        ids = outputs[0][0]
        raw = torch.stack([o[1] for o in outputs])  # [P, N, out_dim]
        target = outputs[0][2]  # [N]
        if self.classes:
            probs = torch.softmax(raw.float(), dim=-1)  # [P, N, K]
            mean_prob = probs.mean(0)
            losses = F.nll_loss(torch.log(mean_prob.clamp_min(1e-12)), target.long(),
                                reduction="none")
            actual = np.asarray([self.actual[s] for s in ids])
            result = from_passes(ids, probs.numpy(), actual, self.classes)
        else:
            losses = REGRESSION_LOSSES[self.cfg.loss](raw[..., 0].mean(0), target.float(),
                                                      reduction="none")
            result = self._regression_result(ids, raw[..., 0].numpy())
        self.last = result
        self.sample_losses = dict(zip(ids, losses.double().tolist()))
        out = {"val_loss": float(losses.mean())}
        out.update(self._selection(ids, losses.double().numpy(), out["val_loss"]))
        out.update({k: float(v) for k, v in result.metric_values().items() if v is not None})
        return out

    def _selection(self, ids: list[str], losses: np.ndarray, val_loss: float) -> dict:
        """``selection_loss`` against the reference ({} without one, or with selection_se 0)."""
        if self.cfg.selection_se <= 0 or not (self.reference or self._take_reference):
            return {}
        per_unit = unit_losses(ids, losses, self.units)
        if self._take_reference:
            self.reference.update(per_unit)
            self._take_reference = False
        return {"selection_loss": val_loss + self.cfg.selection_se
                * paired_standard_error(per_unit, self.reference)}

    def _one_pass(self, model: nn.Module, loader, pass_index: int = 0
                  ) -> tuple[list[str], Tensor, Tensor]:
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_pass"):  # before the workers start: each pass draws anew
            dataset.set_pass(pass_index)
        device = next(model.parameters()).device
        ids, preds, targets = [], [], []
        attention = AttentionMap()
        for batch in loader:
            out = model(batch.to(device), mask_rate=0.0)
            ids += list(batch.sample_ids)
            preds.append(out.prediction.float().cpu())
            targets.append(batch.target.cpu())
            if pass_index == 0 and out.attention is not None:
                attention.add(out.attention)
        if pass_index == 0:
            self.attention_map = attention.mean(self.dist)
        ids, (preds, targets) = gather_samples(ids, [_cat(preds), _cat(targets)], self.dist)
        order = np.argsort(ids, kind="stable")  # passes line up even if the loader shuffles
        ids = [ids[i] for i in order]
        index = torch.as_tensor(order)
        return ids, preds[index], targets[index]

    def _regression_result(self, ids: list[str], raw: np.ndarray) -> Predictions:
        groups = [self.groups.get(s, ()) for s in ids]
        values = np.stack([self.transform.inverse(r, groups) for r in raw])  # [P, N]
        actual = np.asarray([self.actual[s] for s in ids], dtype=np.float64)
        return from_passes(ids, values, actual)

    def figures(self) -> dict:
        """Figures of the last evaluation: predicted vs actual (regression, original scale) and
        cross-attention's weights (heads x categorical tokens, mean over validation samples)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = {}
        if self.attention_map is not None:
            out["fusion/cross_attention_weights"] = attention_figure(
                self.attention_map, self.cfg.data.categorical_columns)
        if self.last is None or self.classes:
            return out
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(self.last.actual, self.last.prediction, s=8, alpha=0.7)
        low = float(min(self.last.actual.min(), self.last.prediction.min()))
        high = float(max(self.last.actual.max(), self.last.prediction.max()))
        ax.plot([low, high], [low, high], color="grey", linewidth=1)
        ax.set_xlabel(f"actual {self.cfg.target_column}")
        ax.set_ylabel(f"predicted {self.cfg.target_column}")
        fig.tight_layout()
        return {**out, "val/predicted_vs_actual": fig}


class AttentionMap:
    """Running mean of cross-attention weights [B, H, S, T] over validation samples: each sample
    contributes its mean over real ASV positions, [H, T] (rows sum to 1)."""

    def __init__(self) -> None:
        self.total: Optional[Tensor] = None
        self.n = 0

    def add(self, weights: Tensor) -> None:
        weights = weights.detach().float().cpu()
        real = (weights.sum(-1) > 0).float()  # [B, H, S]
        per_sample = (weights.sum(2) / real.sum(2).clamp_min(1)[..., None])  # [B, H, T]
        batch_sum = per_sample.sum(0)
        self.total = batch_sum if self.total is None else self.total + batch_sum
        self.n += weights.shape[0]

    def mean(self, dist: DistContext) -> Optional[np.ndarray]:
        """The mean over every rank's samples (None without cross-attention)."""
        parts = [p for p in gather_objects((self.total, self.n), dist) if p[0] is not None]
        if not parts:
            return None
        total = sum(p[0] for p in parts)
        return (total / max(sum(p[1] for p in parts), 1)).numpy()


def unit_losses(ids: Sequence[str], losses: np.ndarray, units: dict) -> dict[str, float]:
    """Mean loss of each unit (``units[sample]``, the sample itself when it has none)."""
    per_unit: dict[str, list] = {}
    for sample, loss in zip(ids, losses):
        per_unit.setdefault(units.get(sample, sample), []).append(float(loss))
    return {unit: float(np.mean(v)) for unit, v in per_unit.items()}


def paired_standard_error(losses: dict[str, float], reference: dict[str, float]) -> float:
    """Standard error of the mean per-unit difference ``losses - reference`` over the units
    both have (0 with fewer than two)."""
    diff = np.asarray([loss - reference[u] for u, loss in losses.items() if u in reference])
    return float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0


def attention_figure(weights: np.ndarray, columns: Sequence[str]):
    """Heatmap of ``weights`` [heads, tokens], tokens labelled by their categorical column."""
    import matplotlib.pyplot as plt

    heads, tokens = weights.shape
    per_column = max(tokens // max(len(columns), 1), 1)
    labels = [f"{columns[t // per_column] if t // per_column < len(columns) else '?'}"
              f"[{t % per_column}]" for t in range(tokens)]
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * tokens, 1.0 + 0.35 * heads))
    image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_xticks(range(tokens), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(heads), [f"head {h}" for h in range(heads)], fontsize=7)
    ax.set_title("cross-attention weight (mean over validation samples)", fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def _cat(tensors: list[Tensor]) -> Tensor:
    return torch.cat(tensors) if tensors else torch.zeros(0)


def fusion_statistics(extras: dict[str, Tensor],
                      attention: Optional[Tensor] = None) -> dict[str, float]:
    """Scalar summaries of a fusion's diagnostics (``FusionOut``) for the logs and TensorBoard.

    Each of ``extras`` (e.g. ``gate``) -> ``<name>_mean``/``<name>_std``; the per-position
    ``attention`` [B, H, S, T] a fusion declares -> the mean entropy over metadata tokens at real
    positions and the spread of weights across positions.
    """
    stats: dict[str, float] = {}
    for name, value in extras.items():
        value = value.detach().float()
        stats[f"{name}_mean"] = float(value.mean())
        stats[f"{name}_std"] = float(value.std()) if value.numel() > 1 else 0.0
    if attention is not None:
        value = attention.detach().float()
        real = value.sum(-1) > 0  # [B, H, S]
        entropy = -(value.clamp_min(1e-12).log() * value).sum(-1)  # [B, H, S]
        stats["attention_entropy"] = float(entropy[real].mean()) if real.any() else 0.0
        stats["attention_position_std"] = float(value.std(dim=2).mean())
    return stats
