"""Self-supervised pretraining: ``run_pretrain`` (the objective is in ``pretrain_objective``).

Loss = MSE between predicted and true sample distance (the prepared ``distances.h5``: UniFrac,
Bray-Curtis, ...) over the B(B-1)/2 sample pairs of a batch + ``nucleotide_loss_weight`` x
cross-entropy on masked nucleotides. Validation sees unmasked sequences: ``val_loss`` (which
selects the best epoch) is the distance MSE over all pairs of validation samples. The reported
masked-nucleotide accuracy comes from a separate no-grad pass that masks validation sequences at
the training rate with a fixed seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from aam.atomic import write_json, write_lines, write_text
from aam.config import PretrainConfig, dump_yaml, to_dict
from aam.data.sample_ids import read_sample_lists
from aam.data.tokens import longest
from aam.errors import InputError
from aam.provenance import check_same_inputs, provenance
from aam.training.callbacks import (CheckpointCallback, EarlyStopping, ResumeCheckpoints,
                                    TensorBoardCallback)
from aam.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from aam.training.dist_data import build_loaders
from aam.training.distributed import DistContext, barrier, distributed_session
from aam.training.pretrain_objective import (PretrainObjective, masked_nucleotide_loss,
                                             pair_mse)
from aam.training.resume import adopt_derived, check_resume
from aam.training.seeding import seed_everything

log = logging.getLogger(__name__)


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
        No sample distances, unknown sample IDs, too few samples, or a resume checkpoint whose
        model settings differ.
    """
    with distributed_session(cfg.train.parallel, cfg.train.device) as ctx:
        return _pretrain(cfg, paths, ctx)


def _pretrain(cfg: PretrainConfig, paths: PretrainPaths, ctx: DistContext) -> dict:
    """The run on one rank: every rank trains on its share; rank 0 alone writes files."""
    from aam.data.dataset import SampleDataset
    from aam.data.prepared import load_prepared
    from aam.models.pretrain import PretrainModel
    from aam.training.loop import fit

    out = Path(paths.output_dir)
    data = load_prepared(paths.data_dir)
    train_ids, val_ids = _split(data.sample_ids, paths, cfg.data.val_fraction, cfg.train.seed)
    _check_distances_vary(data, train_ids, paths.data_dir)
    resume = _load_resume(paths.resume_from, cfg)
    inputs = provenance(data, train_ids, val_ids, paths.data_dir)
    if resume is not None:
        check_same_inputs(resume.provenance, inputs, paths.resume_from)
        cfg = adopt_derived(cfg, resume)
    max_bp = cfg.data.max_bp or longest(data.sequences)
    cfg = replace(cfg, data=replace(cfg.data, max_bp=max_bp),
                  model=replace(cfg.model, max_bp=max_bp))
    seed, bs = cfg.train.seed, cfg.data.batch_size
    seed_everything(seed)
    train_set = SampleDataset(data, train_ids, cfg.data, with_distances=True, seed=seed)
    val_set = SampleDataset(data, val_ids, cfg.data, with_distances=True, seed=seed)
    if ctx.is_main:  # only once the inputs are known to be usable: a refused run writes nothing
        write_text(out / "config.resolved.yaml", dump_yaml(cfg))
        write_lines(out / "train_samples.txt", train_ids)
        write_lines(out / "val_samples.txt", val_ids)
    per_rank = -(-len(train_ids) // ctx.world_size)
    train_loader, val_loader = build_loaders(train_set, val_set, cfg.data, seed, ctx,
                                             drop_last=per_rank >= bs)
    model = PretrainModel(cfg)
    # every parameter gets a gradient when nucleotides are masked: DDP can skip its search
    model.always_uses_all_parameters = cfg.nucleotide_mask_rate > 0
    objective = PretrainObjective(cfg.nucleotide_mask_rate, cfg.nucleotide_loss_weight,
                                  distances=data.distances, seed=seed, dist=ctx)
    ckpt = CheckpointCallback(out / "checkpoints", "encoder", to_dict(cfg), seed,
                              provenance=inputs)
    callbacks = [ResumeCheckpoints(ckpt, resume, paths.resume_from), ckpt,
                 EarlyStopping(cfg.train.patience), TensorBoardCallback(out / "tensorboard")]
    log.info("pretraining on %d samples, validating on %d; %d parameters; batch %d per process "
             "x %d process(es)", len(train_ids), len(val_ids),
             sum(p.numel() for p in model.parameters()), bs, ctx.world_size)
    result = fit(model, objective, train_loader, val_loader, cfg.train, callbacks, resume=resume,
                 dist=ctx)
    barrier(ctx)  # rank 0 has written best.pt before anyone reads it
    best = load_checkpoint(out / "checkpoints" / "best.pt", "encoder")
    model = PretrainModel(cfg).to(ctx.device)
    model.load_state_dict(best.model_state)
    model.eval()
    with torch.no_grad():
        best_logs = objective.evaluate(model, val_loader)
    metrics = _metrics(cfg, result, best_logs, len(train_ids), len(val_ids))
    metrics["world_size"] = ctx.world_size
    if ctx.is_main:
        save_checkpoint(out / "encoder.pt", best)
        write_json(out / "metrics.json", metrics)
    return metrics


def _split(sample_ids: list[str], paths: PretrainPaths, val_fraction: float,
           seed: int) -> tuple[list[str], list[str]]:
    if (paths.train_samples is None) != (paths.val_samples is None):
        raise InputError("Give both --train-samples and --val-samples, or neither (then the "
                         "prepared samples are split with --val-fraction).")
    if paths.train_samples is not None:
        lists = read_sample_lists({"--train-samples": paths.train_samples,
                                   "--val-samples": paths.val_samples}, sample_ids)
        train, val = lists["--train-samples"], lists["--val-samples"]
    else:
        order = np.random.default_rng(seed).permutation(len(sample_ids))
        n_val = max(2, int(round(val_fraction * len(sample_ids))))
        val = [sample_ids[i] for i in sorted(order[:n_val])]
        train = [sample_ids[i] for i in sorted(order[n_val:])]
    if len(train) < 2 or len(val) < 2:
        raise InputError(f"Pretraining needs at least 2 training and 2 validation samples "
                         f"(sample pairs); got {len(train)} and {len(val)}. Use more samples.")
    return train, val


def _check_distances_vary(data, train_ids: list[str], data_dir: Path) -> None:
    """Refuse distances that are all equal between the training samples: there is nothing to
    learn from them (the loss is flat and their correlation with any prediction undefined)."""
    if data.distances is None:
        return  # the dataset names the missing distances
    index = {s: i for i, s in enumerate(data.sample_ids)}
    rows = np.array([index[s] for s in train_ids])
    block = data.distances[np.ix_(rows, rows)]
    off = block[~np.eye(len(rows), dtype=bool)]
    if off.size and float(off.max() - off.min()) == 0.0:
        raise InputError(
            f"every distance between the {len(rows)} training samples in {data_dir} is "
            f"{float(off.max()):g}: pretraining has nothing to learn from them. Check the "
            "distance matrix (a tree or metric that sees no differences), or skip pretraining.")


def _load_resume(path: Optional[Path], cfg: PretrainConfig) -> Optional[Checkpoint]:
    if path is None:
        return None
    checkpoint = load_checkpoint(path, "encoder")
    check_resume(cfg, checkpoint, path)
    return checkpoint


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
        "train_samples_per_s": result.train_samples_per_s,
        "notes": "val_loss and val_pearson/val_spearman use unmasked validation input over all "
                 "validation pairs; val_nuc_accuracy masks validation sequences at the training "
                 "rate in a separate no-grad pass (fixed seed); val_most_frequent_base_rate is "
                 "the accuracy of always guessing the commonest masked base.",
        "config": to_dict(cfg),
    }

__all__ = ["PretrainObjective", "PretrainPaths", "masked_nucleotide_loss", "pair_mse",
           "run_pretrain"]
