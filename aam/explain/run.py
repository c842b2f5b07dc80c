"""``aam explain``: which ASVs drive a trained model's predictions.

Writes into the output folder:

- ``attributions.tsv``: the top ASVs over the explained samples (``feature-id`` = MD5 of the
  sequence, QIIME 2's hashed ID, so ``qiime metadata tabulate`` reads it as feature metadata),
  with sequence, taxon, rank, mean |attribution|, signed mean (per class for classification),
  pooling weights and, with ``--rf-importances``, the forest's importance and rank;
- ``per_sample_attributions.tsv``: one row per (sample, ASV) occurrence;
- ``samples.tsv``: per sample f(x), f(baseline), the attribution sum and the completeness gap;
- ``cross_attention.tsv`` (cross-attention fusion): mean weight of each top ASV on each metadata
  token, per category level;
- ``explain.json`` (settings, completeness summary, rank agreement) and ``attributions.svg``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from aam.atomic import atomic_path, write_json
from aam.config import ASV_SAMPLING
from aam.data.prepared import PreparedData, load_prepared
from aam.data.sample_ids import read_sample_lists
from aam.data.taxonomy import TAXONOMY_FILE, check_taxonomy_ids, read_taxonomy, taxa_by_sequence
from aam.errors import InputError
from aam.explain.collect import Collected, collect, completeness
from aam.explain.figure import attribution_figure
from aam.explain.importances import read_rf_importances, shared_importances
from aam.explain.tables import aggregate, rank_agreement
from aam.explain.truth import signal_sequences, truth_aurocs
from aam.inference import load_predictor, warn_truncation
from aam.reports.plots import save_figure
from aam.settings import setting
from aam.training.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of one explain run; ``None`` takes the model's value."""

    steps: int = setting(32, "integration steps from the zero-abundance baseline")
    top_features: int = setting(100, "rows of attributions.tsv (0 = every ASV seen)")
    batch_size: Optional[int] = setting(None, "samples per batch (default: the model's training "
                                        "setting)")
    asv_sampling: Optional[str] = setting(None, "which ASVs when a sample has more than the "
                                          "token limit (default: the model's training setting)",
                                          choices=ASV_SAMPLING)
    device: str = setting("auto", "auto (cuda if available), cpu, cuda or cuda:N", runtime=True)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps must be >= 1, got {self.steps}.")
        if self.top_features < 0:
            raise InputError(f"--top-features must be >= 0 (0 = all), got {self.top_features}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if self.asv_sampling is not None and self.asv_sampling not in ASV_SAMPLING:
            raise InputError(f"--asv-sampling must be one of {', '.join(ASV_SAMPLING)}; got "
                             f"{self.asv_sampling!r}.")


@dataclass(frozen=True)
class ExplainPaths:
    """Inputs and output folder of ``aam explain``."""

    model: Path
    data_dir: Path
    output_dir: Path
    samples: Optional[Path] = None
    taxonomy: Optional[Path] = None  # default: the prepared folder's taxonomy.tsv, if any
    rf_importances: Optional[Path] = None  # feature_importance.tsv of aam rf-baseline
    linear_importances: Optional[Path] = None  # feature_importance.tsv of aam linear-baseline
    truth: Optional[Path] = None  # truth.json of aam simulate: report the signal AUROC


@dataclass
class Explanation:
    """The result of :func:`explain`: the full ranked table and what it was built from."""

    table: pd.DataFrame  # every ASV seen, ranked (see aam.explain.tables.aggregate)
    collected: Collected
    summary: dict
    metadata: pd.DataFrame  # of the explained samples
    columns: list[str]  # the model's categorical columns
    rf: Optional[pd.Series] = None  # the forest's importance by sequence (shared ASVs only)


def _taxa(paths: ExplainPaths, data: PreparedData) -> Optional[pd.Series]:
    path = paths.taxonomy
    if path is None and (Path(paths.data_dir) / TAXONOMY_FILE).is_file():
        path = Path(paths.data_dir) / TAXONOMY_FILE
    if path is None:
        return None
    taxonomy = read_taxonomy(path)
    check_taxonomy_ids(taxonomy, data.sequences, str(paths.data_dir))
    return taxa_by_sequence(taxonomy, data.sequences)


def explain(cfg: ExplainConfig, paths: ExplainPaths) -> Explanation:
    """Load the model and data, attribute, aggregate (no files written).

    Every input file is read and checked before the attributions are computed.
    """
    start = time.perf_counter()
    model, payload = load_predictor(paths.model, command="aam explain")
    data = load_prepared(paths.data_dir)
    ids = data.sample_ids
    if paths.samples is not None:
        ids = read_sample_lists({"--samples": paths.samples}, data.sample_ids)["--samples"]
        data = data.subset(ids, source=str(paths.samples))
    where = str(paths.data_dir)
    taxa = _taxa(paths, data)
    baselines = {}  # name -> (importance by sequence, overlap, path)
    for name, path in (("rf", paths.rf_importances), ("linear", paths.linear_importances)):
        if path is not None:
            baselines[name] = (*shared_importances(read_rf_importances(path), data.sequences,
                                                   path, where), path)
    rf = baselines["rf"][0] if "rf" in baselines else None
    signal = signal_sequences(paths.truth) if paths.truth is not None else None
    warn_truncation(model.cfg, data.sequences)
    classes = payload.predictor.classes if model.cfg.task == "classification" else None
    got = collect(model, payload, data, ids, data.metadata, cfg.steps, cfg.batch_size,
                  cfg.asv_sampling, resolve_device(cfg.device))
    table = aggregate(got.per_sample, len(ids), classes, data.sequences, taxa)
    summary = {"task": model.cfg.task, "target": model.cfg.target_column,
               "n_samples": len(ids), "n_asvs_seen": len(table), "classes": classes,
               "method": "integrated gradients over [log1p(count), count/depth] of each ASV "
                         "occurrence; baseline: both 0 (the ASV's sequence stays)",
               "output_scale": ("log-probability per class" if classes else
                                "model scale (after the target transform)"),
               "completeness": completeness(got.samples), "fusion_diagnostics": got.extras,
               "config": asdict(cfg), "model": str(paths.model), "taxonomy": taxa is not None}
    aam = table.set_index("sequence")["mean_abs_attribution"]
    for name, (importance, overlap, path) in baselines.items():
        summary[f"{name}_importances"] = {"path": str(path), **overlap}
        summary[f"rank_agreement_with_{name}"] = rank_agreement(aam, importance)
        table[f"{name}_importance"] = table["sequence"].map(importance)
        table[f"{name}_rank"] = table["sequence"].map(
            importance.rank(ascending=False, method="min"))
    if signal is not None:
        linear = baselines["linear"][0] if "linear" in baselines else None
        summary["truth"] = truth_aurocs(data.sequences, signal, aam, rf, str(paths.truth), where,
                                        linear)
        log.info("known truth: signal-ASV AUROC %s", ", ".join(
            f"{k[:-6]} {v:.3f}" for k, v in summary["truth"].items() if k.endswith("_auroc")))
    summary["wall_seconds"] = round(time.perf_counter() - start, 3)
    log.info("explained %d samples: completeness gap max %.3g (relative %.3g)", len(ids),
             summary["completeness"]["max_abs_gap"], summary["completeness"]["max_relative_gap"])
    return Explanation(table, got, summary, data.metadata,
                       list(model.cfg.data.categorical_columns), rf)


def cross_attention_by_level(got: Collected, meta: pd.DataFrame, table: pd.DataFrame,
                             columns: list[str], top: int) -> Optional[pd.DataFrame]:
    """Mean cross-attention weight of each top ASV on each of a column's metadata tokens, per
    level of that column (over the explained samples at that level)."""
    if got.cross_attention is None:
        return None
    keep = table.head(top).set_index("asv_index")
    frame = got.cross_attention[got.cross_attention["asv_index"].isin(keep.index)]
    parts = []
    for column in columns:
        part = frame[frame["token"].str.startswith(f"{column}#")].copy()
        part["level"] = part["sample_id"].map(meta[column].astype(object)).fillna("(missing)")
        grouped = part.groupby(["level", "asv_index", "token"], sort=True)["weight"]
        stats = grouped.agg(["mean", "size"]).reset_index()
        stats.insert(0, "column", column)
        parts.append(stats.rename(columns={"mean": "mean_weight", "size": "n_samples"}))
    out = pd.concat(parts, ignore_index=True)
    out.insert(3, "feature-id", out["asv_index"].map(keep["feature-id"]))
    out.insert(4, "taxon", out["asv_index"].map(keep["taxon"]))
    return out.drop(columns="asv_index")


def write_explanation(result: Explanation, paths: ExplainPaths, cfg: ExplainConfig) -> None:
    """Write the files listed in the module docstring (each atomically)."""
    out = Path(paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    top = result.table if cfg.top_features == 0 else result.table.head(cfg.top_features)
    _tsv(top.drop(columns="asv_index"), out / "attributions.tsv")
    per_sample = result.collected.per_sample.copy()
    sequences = result.table.set_index("asv_index")
    per_sample.insert(1, "feature-id", per_sample["asv_index"].map(sequences["feature-id"]))
    _tsv(per_sample.drop(columns="asv_index"), out / "per_sample_attributions.tsv")
    _tsv(result.collected.samples, out / "samples.tsv")
    cross = cross_attention_by_level(result.collected, result.metadata, result.table,
                                     result.columns,
                                     cfg.top_features or len(result.table))
    if cross is not None:
        _tsv(cross, out / "cross_attention.tsv")
    save_figure(attribution_figure(result.table, result.rf, title=f"top ASVs for "
                                   f"{result.summary['target']} (AAM)"), out / "attributions.svg")
    write_json(out / "explain.json", result.summary)


def _tsv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def run_explain(cfg: ExplainConfig, paths: ExplainPaths) -> Explanation:
    """Explain and write every output; returns the result."""
    result = explain(cfg, paths)
    write_explanation(result, paths, cfg)
    return result


__all__ = ["ExplainConfig", "ExplainPaths", "Explanation", "explain",
           "read_rf_importances", "run_explain", "write_explanation"]
