"""Self-supervised pretraining: the UniFrac + masked-nucleotide objective and ``run_pretrain``.

Loss = MSE between predicted and true unweighted UniFrac distance over the B(B-1)/2 sample pairs
of a batch + ``nucleotide_loss_weight`` x cross-entropy on masked nucleotides. Validation sees
unmasked sequences: ``val_loss`` (which selects the best epoch) is the UniFrac MSE over all pairs
of validation samples. The reported masked-nucleotide accuracy comes from a separate no-grad pass
that masks validation sequences at the training rate with a fixed seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from aam.atomic import write_json, write_lines, write_text
from aam.config import PretrainConfig, dump_yaml, to_dict
from aam.data.batch import Batch
from aam.data.prepared import read_sample_list
from aam.data.tokens import VOCAB_SIZE, longest
from aam.errors import InputError, first_items
from aam.models.encoder import IGNORE_INDEX
from aam.training.callbacks import CheckpointCallback, EarlyStopping, TensorBoardCallback
from aam.training.checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from aam.training.seeding import seed_everything

log = logging.getLogger(__name__)


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
    """Losses and validation metrics of UniFrac pretraining (see the module docstring).

    Parameters
    ----------
    mask_rate : float
        Fraction of real nucleotides masked during training (and in the accuracy pass).
    nucleotide_loss_weight : float
        Weight w of the masked-nucleotide loss.
    unifrac : ndarray [N, N], optional
        Full distance matrix aligned to ``Batch.sample_index``; validation then compares every
        pair of validation samples, otherwise only pairs within each batch.
    seed : int
        Seed of the fixed validation mask.
    """

    def __init__(self, mask_rate: float, nucleotide_loss_weight: float,
                 unifrac: np.ndarray | None = None, seed: int = 0) -> None:
        self.mask_rate = mask_rate
        self.weight = nucleotide_loss_weight
        self.unifrac = unifrac
        self.seed = seed
        self.last_pairs: tuple[np.ndarray, np.ndarray] | None = None

    def loss(self, model, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Training loss of one batch and its parts."""
        out = model(batch, mask_rate=self.mask_rate)
        unifrac_loss = pair_mse(out.distances, batch.unifrac)
        logs = {"unifrac_loss": unifrac_loss.item()}
        loss = unifrac_loss
        if out.encoder.nuc_logits is not None:
            nuc_loss, correct, n = masked_nucleotide_loss(out.encoder.nuc_logits,
                                                          out.encoder.nuc_targets)
            loss = loss + self.weight * nuc_loss
            logs.update(nuc_loss=nuc_loss.item(), nuc_accuracy=correct / max(n, 1))
        logs["loss"] = loss.item()
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        """Validation metrics: val_loss (UniFrac MSE, unmasked), Pearson/Spearman, accuracy."""
        predicted, true = self._distance_pairs(model, loader)
        self.last_pairs = (predicted, true)
        logs = {"val_loss": float(np.mean((predicted - true) ** 2)) if len(true) else np.nan,
                "val_pearson": _corr(stats.pearsonr, predicted, true),
                "val_spearman": _corr(stats.spearmanr, predicted, true)}
        if self.mask_rate > 0:
            logs.update(self._masked_accuracy(model, loader))
        return logs

    def _distance_pairs(self, model, loader) -> tuple[np.ndarray, np.ndarray]:
        head = unwrap_model(model).unifrac_head
        device = next(unwrap_model(model).parameters()).device
        projected, rows, pred_pairs, true_pairs = [], [], [], []
        for batch in loader:
            batch = batch.to(device)
            out = model(batch)
            if self.unifrac is None:
                i, j = torch.triu_indices(batch.size, batch.size, offset=1)
                pred_pairs.append(out.distances[i, j].float().cpu())
                true_pairs.append(batch.unifrac[i, j].float().cpu())
            else:
                projected.append(head.embed(out.encoder.sample_emb))
                rows.append(batch.sample_index.cpu().numpy())
        if self.unifrac is not None:
            with torch.autocast(device.type, enabled=False):
                distances = head.pairwise(torch.cat(projected)).cpu()  # [N, N]
            index = np.concatenate(rows)
            i, j = np.triu_indices(len(index), k=1)
            pred_pairs = [distances[i, j]]
            true_pairs = [torch.from_numpy(np.asarray(self.unifrac)[index[i], index[j]])]
        return (torch.cat(pred_pairs).numpy().astype(np.float64),
                torch.cat(true_pairs).numpy().astype(np.float64))

    def _masked_accuracy(self, model, loader) -> dict[str, float]:
        device = next(unwrap_model(model).parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.seed)
        loss_sum, correct, total = 0.0, 0, 0
        target_counts = torch.zeros(VOCAB_SIZE, dtype=torch.long)
        for batch in loader:
            batch = batch.to(device)
            enc = model(batch, mask_rate=self.mask_rate, generator=generator).encoder
            loss, n_correct, n = masked_nucleotide_loss(enc.nuc_logits, enc.nuc_targets)
            loss_sum, correct, total = loss_sum + float(loss) * n, correct + n_correct, total + n
            selected = enc.nuc_targets[enc.nuc_targets != IGNORE_INDEX].cpu()
            target_counts += torch.bincount(selected, minlength=VOCAB_SIZE)
        total = max(total, 1)
        return {"val_nuc_loss": loss_sum / total, "val_nuc_accuracy": correct / total,
                "val_most_frequent_base_rate": float(target_counts.max()) / total}

    def figures(self) -> dict:
        """Predicted vs true UniFrac distance of the last validation pairs (matplotlib, Agg)."""
        if self.last_pairs is None:
            return {}
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global

        predicted, true = self.last_pairs
        keep = np.random.default_rng(0).permutation(len(true))[:5000]
        fig = Figure(figsize=(4, 4))
        ax = fig.add_subplot()
        ax.scatter(true[keep], predicted[keep], s=3, alpha=0.4)
        ax.set_xlabel("true unweighted UniFrac")
        ax.set_ylabel("predicted distance")
        ax.set_title(f"validation pairs (n={len(true)})")
        fig.tight_layout()
        return {"unifrac/predicted_vs_true": fig}


def _corr(func, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(func(a, b)[0])


@dataclass(frozen=True)
class PretrainPaths:
    """Inputs and outputs of one pretraining run (sample lists optional: else a seeded split)."""

    data_dir: Path
    output_dir: Path
    train_samples: Optional[Path] = None
    val_samples: Optional[Path] = None
    resume_from: Optional[Path] = None


def run_pretrain(cfg: PretrainConfig, paths: PretrainPaths) -> dict:
    """Pretrain an encoder; write ``encoder.pt``, ``metrics.json`` and their companions.

    Writes ``DIR/{encoder.pt, metrics.json, config.resolved.yaml, train_samples.txt,
    val_samples.txt, checkpoints/{best,last}.pt, tensorboard/}``.

    Parameters
    ----------
    cfg : PretrainConfig
    paths : PretrainPaths

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.

    Raises
    ------
    InputError
        No UniFrac distances, unknown sample IDs, too few samples, or a resume checkpoint whose
        model settings differ.
    """
    from aam.data.dataset import SampleDataset, make_loader
    from aam.data.prepared import load_prepared
    from aam.models.pretrain import PretrainModel
    from aam.training.loop import fit

    out = Path(paths.output_dir)
    data = load_prepared(paths.data_dir)
    train_ids, val_ids = _split(data.sample_ids, paths, cfg.data.val_fraction, cfg.train.seed)
    max_bp = cfg.data.max_bp or longest(data.sequences)
    cfg = replace(cfg, data=replace(cfg.data, max_bp=max_bp),
                  model=replace(cfg.model, max_bp=max_bp))
    resume = _load_resume(paths.resume_from, cfg)
    seed, bs = cfg.train.seed, cfg.data.batch_size
    seed_everything(seed)
    train_set = SampleDataset(data, train_ids, cfg.data, with_unifrac=True, seed=seed)
    val_set = SampleDataset(data, val_ids, cfg.data, with_unifrac=True, seed=seed)
    # written only once the inputs are known to be usable, so a refused run leaves no files
    write_text(out / "config.resolved.yaml", dump_yaml(cfg))
    write_lines(out / "train_samples.txt", train_ids)
    write_lines(out / "val_samples.txt", val_ids)
    train_loader = make_loader(train_set, bs, shuffle=True, seed=seed,
                               drop_last=len(train_ids) >= bs, num_workers=cfg.data.num_workers)
    val_loader = make_loader(val_set, bs, shuffle=False, seed=seed,
                             num_workers=cfg.data.num_workers)
    model = PretrainModel(cfg)
    objective = PretrainObjective(cfg.nucleotide_mask_rate, cfg.nucleotide_loss_weight,
                                  unifrac=data.unifrac, seed=seed)
    ckpt = CheckpointCallback(out / "checkpoints", "encoder", to_dict(cfg), seed)
    callbacks = [ckpt, EarlyStopping(cfg.train.patience), TensorBoardCallback(out / "tensorboard")]
    log.info("pretraining on %d samples, validating on %d; %d parameters", len(train_ids),
             len(val_ids), sum(p.numel() for p in model.parameters()))
    result = fit(model, objective, train_loader, val_loader, cfg.train, callbacks, resume=resume)
    best = load_checkpoint(out / "checkpoints" / "best.pt", "encoder")
    model.load_state_dict(best["model_state"])
    model.eval()
    with torch.no_grad():
        best_logs = objective.evaluate(model, val_loader)
    save_checkpoint(out / "encoder.pt", best)
    metrics = _metrics(cfg, result, best_logs, len(train_ids), len(val_ids))
    write_json(out / "metrics.json", metrics)
    return metrics


def _split(sample_ids: list[str], paths: PretrainPaths, val_fraction: float,
           seed: int) -> tuple[list[str], list[str]]:
    if (paths.train_samples is None) != (paths.val_samples is None):
        raise InputError("Give both --train-samples and --val-samples, or neither (then the "
                         "prepared samples are split with --val-fraction).")
    if paths.train_samples is not None:
        known = set(sample_ids)
        train, val = read_sample_list(paths.train_samples), read_sample_list(paths.val_samples)
        for name, ids in ((paths.train_samples, train), (paths.val_samples, val)):
            missing = [s for s in ids if s not in known]
            if missing:
                raise InputError(f"{first_items(missing)} samples in {name} are not in the "
                                 "prepared table.biom. Regenerate the split or fix the sample IDs.")
    else:
        order = np.random.default_rng(seed).permutation(len(sample_ids))
        n_val = max(2, int(round(val_fraction * len(sample_ids))))
        val = [sample_ids[i] for i in sorted(order[:n_val])]
        train = [sample_ids[i] for i in sorted(order[n_val:])]
    if len(train) < 2 or len(val) < 2:
        raise InputError(f"Pretraining needs at least 2 training and 2 validation samples "
                         f"(UniFrac pairs); got {len(train)} and {len(val)}. Use more samples.")
    return train, val


def _load_resume(path: Optional[Path], cfg: PretrainConfig) -> Optional[dict]:
    if path is None:
        return None
    payload = load_checkpoint(path, "encoder")
    saved = payload["config"].get("model", {})
    changed = sorted(k for k, v in to_dict(cfg.model).items() if saved.get(k) != v)
    if changed:
        raise InputError(f"{path} was trained with other model settings ({', '.join(changed)}); "
                         "resume with the same --config and flags as the interrupted run.")
    if payload.get("optimizer_state") is None:
        raise InputError(f"{path} has no optimizer state; resume from checkpoints/last.pt.")
    return payload


def _metrics(cfg: PretrainConfig, result, best_logs: dict, n_train: int, n_val: int) -> dict:
    history = result.history
    return {
        "task": "pretrain",
        "n_train": n_train, "n_val": n_val, "seed": cfg.train.seed,
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "best": best_logs,
        "final": history[-1] if history else {},
        "first_epoch": history[0] if history else {},
        "wall_s": result.wall_s, "samples_per_s": result.samples_per_s,
        "notes": "val_loss and val_pearson/val_spearman use unmasked validation input over all "
                 "validation pairs; val_nuc_accuracy masks validation sequences at the training "
                 "rate in a separate no-grad pass (fixed seed); val_most_frequent_base_rate is "
                 "the accuracy of always guessing the commonest masked base.",
        "config": to_dict(cfg),
    }
