"""Run :func:`explain_batch` over samples and gather one row per (sample, ASV) occurrence."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from aam.data.categories import encode_categories
from aam.data.dataset import SampleDataset, make_loader
from aam.data.prepared import PreparedData
from aam.explain.attribution import explain_batch
from aam.explain.tables import attribution_columns
from aam.models.predictor import Predictor
from aam.training.checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """Everything explained, as frames.

    Attributes
    ----------
    per_sample : DataFrame   sample_id, asv_index, count, attribution column(s), pool weights
    samples : DataFrame      sample_id, output(s), baseline output(s), attribution sums, gap
    cross_attention : DataFrame or None   sample_id, asv_index, token, weight (cross-attention)
    extras : dict            means of other fusion diagnostics (gate, metadata attention)
    """

    per_sample: pd.DataFrame
    samples: pd.DataFrame
    cross_attention: Optional[pd.DataFrame]
    extras: dict


def metadata_tokens(columns: Sequence[str], n_tokens: int) -> list[str]:
    """Names of the cross-attention fusion's metadata tokens: ``<column>#<j>``, column-major."""
    per = n_tokens // max(len(columns), 1)
    return [f"{c}#{j + 1}" for c in columns for j in range(per)]


def collect(model: Predictor, payload: Checkpoint, data: PreparedData, ids: list[str],
            meta: pd.DataFrame, steps: int, batch_size: Optional[int],
            asv_sampling: Optional[str], device: torch.device) -> Collected:
    """Explain ``ids`` batch by batch (ASV choice as at prediction: the model's token limit and
    sampling unless ``asv_sampling`` overrides it; ``random`` draws use the model's seed)."""
    cfg = model.cfg
    data_cfg = replace(cfg.data, num_workers=0, asv_sampling=asv_sampling or cfg.data.asv_sampling,
                       batch_size=batch_size or cfg.data.batch_size)
    cat_ids = None
    columns = list(cfg.data.categorical_columns)
    if columns:
        vocab = payload.predictor.categorical_vocab
        cat_ids = encode_categories(meta, {c: vocab[c] for c in columns}, ids)[0]
    dataset = SampleDataset(data, ids, data_cfg, cat_ids=cat_ids, seed=cfg.train.seed)
    loader = make_loader(dataset, data_cfg.batch_size, False, cfg.train.seed)
    names = attribution_columns(payload.predictor.classes if cfg.task == "classification" else None)
    rows, sample_rows, cross_rows, extras = [], [], [], {}
    model = model.to(device).eval()
    for batch in tqdm(loader, desc="explain", disable=None):
        batch = batch.to(device)
        exp = explain_batch(model, batch, steps)
        mask = batch.asv_mask.cpu()
        asv_index, counts = batch.asv_index.cpu(), batch.counts.cpu()
        gap = exp.attribution.sum(1) - (exp.output - exp.baseline_output)  # [B, K]
        for b, sid in enumerate(batch.sample_ids):
            real = mask[b]
            row = {"sample_id": sid, "asv_index": asv_index[b][real].numpy(),
                   "count": counts[b][real].numpy()}
            for k, name in enumerate(names):
                row[name] = exp.attribution[b, real, k].numpy()
            row["encoder_pool_weight"] = exp.encoder_pool[b, real].numpy()
            if exp.target_pool is not None:
                row["target_pool_weight"] = exp.target_pool[b, real].numpy()
            rows.append(pd.DataFrame(row))
            sample_rows.append(_sample_row(sid, names, exp, gap, b))
            if exp.cross_attention is not None:
                cross_rows.append(_cross_rows(sid, asv_index[b][real].numpy(),
                                              exp.cross_attention[b, real].numpy(), columns))
        for key, value in exp.extras.items():
            extras.setdefault(key, []).append(value.reshape(value.shape[0], -1).mean(1))
    summary = {k: float(torch.cat(v).mean()) for k, v in extras.items()}
    return Collected(pd.concat(rows, ignore_index=True), pd.DataFrame(sample_rows),
                     pd.concat(cross_rows, ignore_index=True) if cross_rows else None, summary)


def _sample_row(sid: str, names: list[str], exp, gap, b: int) -> dict:
    row = {"sample_id": sid}
    for k, name in enumerate(names):
        suffix = name[len("attribution"):]
        row[f"output{suffix}"] = float(exp.output[b, k])
        row[f"baseline_output{suffix}"] = float(exp.baseline_output[b, k])
        row[f"attribution_sum{suffix}"] = float(exp.attribution[b, :, k].sum())
        row[f"completeness_gap{suffix}"] = float(gap[b, k])
    return row


def _cross_rows(sid: str, asv_index: np.ndarray, weights: np.ndarray,
                columns: list[str]) -> pd.DataFrame:
    """Long rows (sample, ASV, metadata token, weight) of one sample's cross-attention."""
    tokens = metadata_tokens(columns, weights.shape[1])
    return pd.DataFrame({"sample_id": sid, "asv_index": np.repeat(asv_index, len(tokens)),
                         "token": np.tile(tokens, len(asv_index)),
                         "weight": weights.reshape(-1)})


def completeness(samples: pd.DataFrame) -> dict:
    """Summary of the completeness check over samples and outputs: the gaps
    |sum(attr) - (f(x) - f(0))| and the largest one relative to the mean |f(x) - f(0)| (a
    per-sample ratio would blow up where a sample's output barely changes)."""
    gaps = samples.filter(like="completeness_gap").abs().to_numpy()
    delta = np.abs(samples.filter(regex="^output").to_numpy()
                   - samples.filter(like="baseline_output").to_numpy())
    scale = max(float(delta.mean()), 1e-12)
    return {"max_abs_gap": float(gaps.max()), "median_abs_gap": float(np.median(gaps)),
            "mean_abs_output_change": float(delta.mean()),
            "max_relative_gap": float(gaps.max()) / scale}


__all__ = ["Collected", "collect", "completeness", "metadata_tokens"]
