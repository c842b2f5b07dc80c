"""``aam predict``: load a trained predictor, run batched (multi-pass) inference on prepared
samples, and write ``predictions.tsv`` (original target scale) and ``metrics.json``."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from aam.config import ASV_SAMPLING, FinetuneConfig, to_dict
from aam.data.categories import encode_categories, is_missing, metadata_column
from aam.data.dataset import SampleDataset, make_loader
from aam.data.metadata import read_metadata
from aam.data.prepared import PreparedData, load_prepared
from aam.data.sample_ids import read_sample_lists
from aam.data.tokens import longest
from aam.data.targets import group_keys, transform_from_dict
from aam.errors import InputError, first_items
from aam.models.asv_cache import cached_encoder
from aam.models.predictor import Predictor, predictor_from_checkpoint
from aam.predictions import Predictions, from_passes, write_metrics, write_predictions
from aam.training.checkpoint import Checkpoint, load_checkpoint
from aam.settings import setting
from aam.training.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """Settings of one prediction run; ``None`` takes the checkpoint's value."""

    prediction_passes: int = setting(1, "passes averaged per sample, each with a fresh random "
                                     "ASV draw; needs --asv-sampling random")
    asv_sampling: Optional[str] = setting(None, "which ASVs when a sample has more than the "
                                          "token limit (default: the model's training setting)",
                                          choices=ASV_SAMPLING)
    batch_size: Optional[int] = setting(None, "samples per batch (default: the model's training "
                                        "setting)")
    num_workers: int = setting(0, "DataLoader worker processes")
    device: str = setting("auto", "auto (cuda if available), cpu, cuda or cuda:N", runtime=True)
    seed: Optional[int] = setting(None, "seed of the random ASV draws; pass p uses seed + p "
                                  "(default: the model's training seed)")
    # eval mode is deterministic, so each distinct ASV is encoded once per run
    cache_asvs: bool = setting(True, "reuse each distinct ASV's encoding across batches and "
                               "passes (--no-asv-cache: encode it again every time)",
                               flag="--asv-cache")

    def __post_init__(self) -> None:
        if self.prediction_passes < 1:
            raise InputError(f"--prediction-passes must be >= 1, got {self.prediction_passes}.")
        if self.asv_sampling is not None and self.asv_sampling not in ASV_SAMPLING:
            raise InputError(f"--asv-sampling must be one of {', '.join(ASV_SAMPLING)}; got "
                             f"{self.asv_sampling!r}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if self.num_workers < 0:
            raise InputError(f"--num-workers must be >= 0, got {self.num_workers}.")


def load_predictor(path: str | Path, command: str = "aam predict") -> tuple[Predictor, dict]:
    """Rebuild the trained :class:`Predictor` of a ``model.pt`` (strict load, eval mode, CPU).

    Returns
    -------
    model : Predictor
    payload : Checkpoint
        The checkpoint (its ``predictor`` state: target transform, vocabulary, classes).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputError
        For an encoder checkpoint, a corrupt file, or weights that do not fit the config.
    """
    payload = load_checkpoint(path)
    if payload.kind != "predictor":
        raise InputError(f"{path} is an {payload.kind} checkpoint (aam pretrain writes "
                         f"encoder.pt); {command} needs a trained model: pass the model.pt "
                         "written by aam train.")
    return predictor_from_checkpoint(payload, str(path)), payload



def predict_samples(model: Predictor, payload: Checkpoint, data: PreparedData,
                    sample_ids: Sequence[str], cfg: PredictConfig,
                    metadata: Optional[pd.DataFrame] = None,
                    source: str = "metadata.tsv") -> Predictions:
    """Predict ``sample_ids`` of ``data`` (metadata from ``metadata``, else the prepared one).

    Categories unseen in training map to the reserved index 0 (logged, naming them); with
    ``cfg.prediction_passes`` > 1 and random ASV sampling, pass ``p`` draws ASVs with seed
    ``cfg.seed + p`` and results are mean (probability) +- std over passes.

    Raises
    ------
    InputError
        For samples missing from the table or metadata, or missing categorical columns.
    """
    model_cfg: FinetuneConfig = model.cfg
    warn_truncation(model_cfg, data.sequences)
    meta = data.metadata if metadata is None else metadata
    ids = [str(s) for s in sample_ids]
    _check_rows(meta, ids, source)
    data_cfg, passes, seed = _data_settings(model_cfg, cfg)
    vocab = payload.predictor.categorical_vocab
    cat_ids = None
    if model_cfg.data.categorical_columns:
        vocab = {c: vocab[c] for c in model_cfg.data.categorical_columns}
        absent = [c for c in model_cfg.data.categorical_columns if c not in meta.columns]
        if absent:
            raise InputError(
                f"the model was trained with the categorical column(s) {', '.join(absent)}, "
                f"which {source} does not have; give metadata with these columns (--metadata), "
                "values may be empty for unknown categories.")
        cat_ids = encode_categories(meta, vocab, ids)[0]  # warns naming unseen categories
    dataset = SampleDataset(data, ids, data_cfg, cat_ids=cat_ids, seed=seed)
    device = resolve_device(cfg.device)
    raw = run_passes(model.to(device), dataset, passes, seed, cfg, device)  # [P, N, out_dim]
    actual = _actual(model_cfg, payload, meta, ids, source)
    if model_cfg.task == "classification":
        probs = torch.softmax(torch.from_numpy(raw), dim=-1).numpy()  # [P, N, K]
        return from_passes(ids, probs, actual, payload.predictor.classes)
    transform = transform_from_dict(payload.predictor.target_transform)
    groups = group_keys(meta, model_cfg.data.normalize_by, ids, source)
    values = np.stack([transform.inverse(r[:, 0], groups) for r in raw])  # [P, N]
    return from_passes(ids, values, actual)


def warn_truncation(model_cfg: FinetuneConfig, sequences: Sequence[str]) -> None:
    """Longer ASVs than the model read are cut to its ``max_bp``: say so (as aam train does);
    a new study sequenced over a longer region is still predicted, on the first ``max_bp``."""
    max_bp = int(model_cfg.data.max_bp or model_cfg.model.max_bp)
    data_bp = longest(sequences)
    if data_bp > max_bp:
        log.warning("ASVs up to %d nt are truncated to the model's max_bp %d", data_bp, max_bp)


def run_passes(model: Predictor, dataset: SampleDataset, passes: int, seed: int,
               cfg: PredictConfig, device: torch.device) -> np.ndarray:
    """Raw model outputs of every pass, float32 [P, N, out_dim] (model scale, dataset order)."""
    batch_size = cfg.batch_size or model.cfg.data.batch_size
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and model.cfg.train.bf16 else nullcontext())
    outputs = []
    model.eval()
    with torch.inference_mode(), autocast, \
            cached_encoder(model, enabled=cfg.cache_asvs) as encoder_cache:
        for p in range(passes):
            dataset.seed = seed + p  # a fresh, reproducible ASV draw per pass
            loader = make_loader(dataset, batch_size, False, seed, num_workers=cfg.num_workers,
                                 pin_memory=device.type == "cuda")
            rows = []
            for batch in tqdm(loader, desc=f"predict pass {p + 1}/{passes}", disable=None):
                out = model(batch.to(device, non_blocking=True), mask_rate=0.0)
                rows.append(out.prediction.float().cpu())
            outputs.append(torch.cat(rows).numpy())
    if encoder_cache is not None and encoder_cache.requested:
        log.info(encoder_cache.summary())
    return np.stack(outputs)


def _data_settings(model_cfg: FinetuneConfig, cfg: PredictConfig):
    """(DataConfig, passes, seed): sampling and batch size overridden; single pass unless random."""
    sampling = cfg.asv_sampling or model_cfg.data.asv_sampling
    data_cfg = replace(model_cfg.data, asv_sampling=sampling, num_workers=cfg.num_workers,
                       batch_size=cfg.batch_size or model_cfg.data.batch_size)
    passes = cfg.prediction_passes
    if passes > 1 and sampling != "random":
        log.warning("--prediction-passes %d with --asv-sampling %s: every pass would see the "
                    "same ASVs, so a single pass is run; use --asv-sampling random", passes,
                    sampling)
        passes = 1
    seed = model_cfg.train.seed if cfg.seed is None else cfg.seed
    return data_cfg, passes, seed


def _check_rows(meta: pd.DataFrame, ids: list[str], source: str) -> None:
    absent = pd.Index(ids).difference(meta.index.astype(str))
    if len(absent):
        raise InputError(f"{first_items(sorted(absent))} samples have no row in {source}. "
                         "Add them to the metadata or leave them out of --samples.")


def _actual(model_cfg: FinetuneConfig, payload: Checkpoint, meta: pd.DataFrame, ids: list[str],
            source: str) -> np.ndarray:
    """Original-scale target (or label) per sample; NaN where unknown or unparseable."""
    column = model_cfg.target_column
    if column not in meta.columns:
        log.info("%s has no target column '%s': predictions have no actual values", source,
                 column)
        return np.full(len(ids), np.nan, dtype=object if payload.predictor.classes else float)
    raw = metadata_column(meta, column, ids, source)
    known = ~is_missing(raw)
    if model_cfg.task == "classification":
        labels = raw.astype(object).where(known, np.nan).to_numpy()
        new = sorted({str(v) for v in labels[known]} - set(payload.predictor.classes or ()))
        if new:
            log.warning("%s: target '%s' has %s labels not seen in training; they count as "
                        "wrong predictions", source, column, first_items(new))
        return labels
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = known & ~np.isfinite(values)
    if bad.any():
        log.warning("%s: target '%s' is not a finite number for %s samples; their actual is "
                    "left empty", source, column, first_items(np.asarray(ids)[bad]))
    values[bad | ~known] = np.nan
    return values


@dataclass(frozen=True)
class PredictPaths:
    """Inputs and outputs of ``aam predict``; ``metrics`` None -> beside ``output``."""

    model: Path
    data_dir: Path
    output: Path
    samples: Optional[Path] = None
    metadata: Optional[Path] = None
    metrics: Optional[Path] = None


def metrics_path(paths: PredictPaths) -> Path:
    """``metrics.json`` beside the output, or ``predict_metrics.json`` when the output sits in
    the training run's folder (whose ``metrics.json`` belongs to ``aam train``)."""
    if paths.metrics is not None:
        return Path(paths.metrics)
    folder = Path(paths.output).resolve().parent
    same = folder == Path(paths.model).resolve().parent
    return folder / ("predict_metrics.json" if same else "metrics.json")


@dataclass
class PredictInputs:
    """What ``aam predict`` reads: the model, the prepared data, the samples and their
    metadata (``source`` names the metadata file in messages)."""

    model: Predictor
    payload: Checkpoint
    data: PreparedData
    ids: list[str]
    metadata: pd.DataFrame
    source: str


def load_inputs(paths: PredictPaths) -> PredictInputs:
    """Load and check the model, data, sample list and metadata of ``paths``."""
    model, payload = load_predictor(paths.model)
    data = load_prepared(paths.data_dir)
    ids = list(data.sample_ids)
    if paths.samples is not None:
        ids = read_sample_lists({"--samples": paths.samples}, data.sample_ids)["--samples"]
    meta, source = data.metadata, str(Path(paths.data_dir) / "metadata.tsv")
    if paths.metadata is not None:
        meta, source = read_metadata(paths.metadata), str(paths.metadata)
    return PredictInputs(model, payload, data, ids, meta, source)


def run_predict(cfg: PredictConfig, paths: PredictPaths) -> Optional[dict]:
    """Predict and write ``predictions.tsv`` (+ metrics when actual values are known).

    Returns
    -------
    dict or None
        The metrics written, or None when no predicted sample has a known target.
    """
    start = time.perf_counter()
    inputs = load_inputs(paths)
    result = predict_samples(inputs.model, inputs.payload, inputs.data, inputs.ids, cfg,
                             inputs.metadata, inputs.source)
    write_predictions(paths.output, result.sample_ids, result.prediction, result.actual,
                      std=result.std, n_passes=result.n_passes if result.std is not None else None,
                      proba=result.proba, classes=result.classes)
    log.info("wrote %d predictions to %s", len(inputs.ids), paths.output)
    metrics = result.metrics()
    if metrics is None:
        log.info("no predicted sample has a known target: no metrics written")
        return None
    metrics.update({"n_passes": result.n_passes, "wall_time_s": time.perf_counter() - start,
                    "model": str(paths.model), "samples": str(paths.samples or "all"),
                    "seed": inputs.payload.seed, "target": inputs.model.cfg.target_column,
                    "config": {**to_dict(cfg),
                               "metadata_column": inputs.model.cfg.target_column}})
    write_metrics(metrics_path(paths), metrics)
    return metrics


__all__ = ["PredictConfig", "PredictPaths", "Predictions", "load_predictor", "predict_samples",
           "run_passes", "run_predict"]
