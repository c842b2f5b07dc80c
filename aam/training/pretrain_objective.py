"""The pretraining objective: distance pair MSE + masked-nucleotide cross-entropy, and validation.

Validation sees unmasked sequences: ``val_loss`` is the distance MSE over all pairs of validation
samples. Under torchrun each rank validates its shard and the rows are gathered, so every rank
returns the metrics one process would compute.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from aam.data.batch import Batch
from aam.data.tokens import VOCAB_SIZE
from aam.models.encoder import IGNORE_INDEX
from aam.training.dist_data import gather_samples
from aam.training.distributed import DistContext, all_reduce_sums, gather_objects, unwrap


def pair_mse(predicted: Tensor, true: Tensor) -> Tensor:
    """Mean squared error over the pairs i < j of [B, B] distance matrices (0 when B < 2)."""
    rows, cols = torch.triu_indices(*predicted.shape, offset=1, device=predicted.device)
    if rows.numel() == 0:
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[rows, cols].float(), true[rows, cols].float())


def masked_nucleotide_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, int, int]:
    """Cross-entropy on masked positions only -> (loss, n_correct, n_masked).

    logits [U, L, V], targets [U, L] with -100 where not masked. No masked position gives 0.
    """
    selected = targets != IGNORE_INDEX
    n_masked = int(selected.sum())
    if n_masked == 0:
        return logits.sum() * 0.0, 0, 0
    chosen = logits[selected].float()  # [M, V]
    loss = F.cross_entropy(chosen, targets[selected])
    correct = int((chosen.argmax(-1) == targets[selected]).sum())
    return loss, correct, n_masked


class PretrainObjective:
    """Losses and validation metrics of distance pretraining (see the module docstring).

    Parameters
    ----------
    mask_rate : float
        Fraction of real nucleotides masked during training (and in the accuracy pass).
    nucleotide_loss_weight : float
        Weight w of the masked-nucleotide loss.
    distances : ndarray [N, N], optional
        Full distance matrix aligned to ``Batch.sample_index``; validation then compares every
        pair of validation samples, otherwise only pairs within each batch.
    seed : int
        Seed of the fixed validation mask.
    dist : DistContext, optional
        Under torchrun each rank validates its shard; sample embeddings (or batch pairs) are
        gathered and sums all-reduced, so every rank returns the one-process metrics.
    """

    min_part_size = 2  # --parallel dp: each GPU's part needs a sample pair

    def __init__(self, mask_rate: float, nucleotide_loss_weight: float,
                 distances: np.ndarray | None = None, seed: int = 0,
                 dist: DistContext | None = None) -> None:
        self.mask_rate = mask_rate
        self.weight = nucleotide_loss_weight
        self.distances = distances
        self.seed = seed
        self.dist = dist or DistContext()
        self.last_pairs: tuple[np.ndarray, np.ndarray] | None = None

    def loss(self, model, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Training loss of one batch and its parts."""
        out = model(batch, mask_rate=self.mask_rate)
        distance_loss = pair_mse(out.distances, batch.distances)
        logs = {"distance_loss": distance_loss.item()}
        loss = distance_loss
        if out.encoder.nuc_logits is not None:
            nuc_loss, correct, n = masked_nucleotide_loss(out.encoder.nuc_logits,
                                                          out.encoder.nuc_targets)
            loss = loss + self.weight * nuc_loss
            logs.update(nuc_loss=nuc_loss.item(), nuc_accuracy=correct / max(n, 1))
        logs["loss"] = loss.item()
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        """Validation metrics: val_loss (distance MSE, unmasked), Pearson/Spearman, accuracy."""
        predicted, true = self._distance_pairs(model, loader)
        self.last_pairs = (predicted, true)
        logs = {"val_loss": float(np.mean((predicted - true) ** 2)) if len(true) else np.nan,
                "val_pearson": _corr(stats.pearsonr, predicted, true),
                "val_spearman": _corr(stats.spearmanr, predicted, true)}
        if self.mask_rate > 0:
            logs.update(self._masked_accuracy(model, loader))
        return logs

    def _distance_pairs(self, model, loader) -> tuple[np.ndarray, np.ndarray]:
        head = unwrap(model).distance_head
        device = next(unwrap(model).parameters()).device
        ids, projected, rows, pred_pairs, true_pairs = [], [], [], [], []
        for batch in loader:
            batch = batch.to(device)
            out = model(batch)
            if self.distances is None:
                i, j = torch.triu_indices(batch.size, batch.size, offset=1)
                pred_pairs.append(out.distances[i, j].float().cpu())
                true_pairs.append(batch.distances[i, j].float().cpu())
            else:
                ids += list(batch.sample_ids)
                projected.append(head.embed(out.encoder.sample_emb).float())
                rows.append(batch.sample_index)
        if self.distances is None:
            parts = gather_objects((pred_pairs, true_pairs), self.dist)
            pred_pairs = [t for part in parts for t in part[0]]
            true_pairs = [t for part in parts for t in part[1]]
        else:
            _, (embedded, index) = gather_samples(ids, [_cat(projected), _cat(rows)], self.dist)
            with torch.autocast(device.type, enabled=False):
                distances = head.pairwise(embedded.to(device)).cpu()  # [N, N]
            index = index.numpy()
            i, j = np.triu_indices(len(index), k=1)
            pred_pairs = [distances[i, j]]
            true_pairs = [torch.from_numpy(np.asarray(self.distances)[index[i], index[j]])]
        return (torch.cat(pred_pairs).numpy().astype(np.float64),
                torch.cat(true_pairs).numpy().astype(np.float64))

    def _masked_accuracy(self, model, loader) -> dict[str, float]:
        device = next(unwrap(model).parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.seed + self.dist.rank)
        sums = {"loss": 0.0, "correct": 0.0, "total": 0.0}
        target_counts = torch.zeros(VOCAB_SIZE, dtype=torch.long)
        for batch in loader:
            batch = batch.to(device)
            enc = model(batch, mask_rate=self.mask_rate, generator=generator).encoder
            loss, n_correct, n = masked_nucleotide_loss(enc.nuc_logits, enc.nuc_targets)
            sums["loss"] += float(loss) * n
            sums["correct"] += n_correct
            sums["total"] += n
            selected = enc.nuc_targets[enc.nuc_targets != IGNORE_INDEX].cpu()
            target_counts += torch.bincount(selected, minlength=VOCAB_SIZE)
        sums.update({f"base{k}": float(c) for k, c in enumerate(target_counts.tolist())})
        sums = all_reduce_sums(sums, self.dist)  # sums and counts over ranks, then divide
        total = max(sums["total"], 1.0)
        top = max(sums[f"base{k}"] for k in range(VOCAB_SIZE))
        return {"val_nuc_loss": sums["loss"] / total, "val_nuc_accuracy": sums["correct"] / total,
                "val_most_frequent_base_rate": top / total}

    def figures(self) -> dict:
        """Predicted vs true distance of the last validation pairs (matplotlib, Agg)."""
        if self.last_pairs is None:
            return {}
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global

        predicted, true = self.last_pairs
        keep = np.random.default_rng(0).permutation(len(true))[:5000]
        fig = Figure(figsize=(4, 4))
        ax = fig.add_subplot()
        ax.scatter(true[keep], predicted[keep], s=3, alpha=0.4)
        ax.set_xlabel("true distance")
        ax.set_ylabel("predicted distance")
        ax.set_title(f"validation pairs (n={len(true)})")
        fig.tight_layout()
        return {"distances/predicted_vs_true": fig}


def _cat(tensors: list[Tensor]) -> Tensor:
    return torch.cat(tensors) if tensors else torch.zeros(0)


def _corr(func, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(func(a, b)[0])
