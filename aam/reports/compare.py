"""Collect every run of a results tree and compare each model with the random-forest baseline.

A run is a folder holding ``predictions.tsv`` (and usually ``metrics.json``) whose path names the
model and split: ``finetune/{ablation}/fold~{k}/seed~{s}/`` or ``rf/fold~{k}/seed~{s}/``, where
``{ablation}`` is a Paramspace string such as ``fusion~cross-attention_freeze~true``.
Metrics are recomputed from the predictions, so every model is scored the same way.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aam.errors import InputError, first_items
from aam.metrics import metric_names
from aam.predictions import (metrics_from_predictions, prediction_classes, prediction_task,
                             read_metrics, read_predictions)
from aam.reports.stats import PairedRun, paired_bootstrap

log = logging.getLogger(__name__)

PAIR = re.compile(r"^([A-Za-z0-9.+-]+)~([^~_]+)$")
PRIMARY = {"regression": "r2", "classification": "balanced_accuracy"}


@dataclass
class Run:
    """One evaluated run: which model, fold and seed, and its predictions."""

    model: str
    params: dict
    fold: int | None
    seed: int | None
    path: Path
    predictions: pd.DataFrame
    metrics: dict = field(default_factory=dict)  # recomputed from the predictions
    target: str = "target"


def parse_run_path(relative: Path, baseline: str = "rf") -> tuple[str, dict, int | None, int | None]:
    """Model name, ablation parameters, fold and seed from a run folder's relative path.

    Plain segments (``finetune``) are ignored; ``fold~K``/``seed~S`` give the split and seed; the
    ``baseline`` segment marks the RF; other segments must be ``key~value`` pairs joined by ``_``.

    Raises
    ------
    InputError
        A segment is not parseable or the path names no model.
    """
    model, params, fold, seed, ablation = None, {}, None, None, []
    for part in relative.parts:
        if part == baseline:
            model = baseline
        elif part.startswith(("fold~", "seed~")):
            key, _, value = part.partition("~")
            if not value.isdigit():
                raise InputError(f"path segment {part!r} of {relative} must be {key}~<integer>.")
            fold, seed = (int(value), seed) if key == "fold" else (fold, int(value))
        elif "~" in part:
            pairs = [PAIR.match(piece) for piece in part.split("_")]
            if not all(pairs):
                raise InputError(f"path segment {part!r} of {relative} is not key~value pairs "
                                 "joined by '_' (values use '-', never '_').")
            params.update(m.groups() for m in pairs)
            ablation.append(part)
    model = model or "/".join(ablation) or None
    if model is None:
        raise InputError(f"{relative} names no model: expected {baseline}/ or an ablation "
                         "segment such as fusion~gmu.")
    return model, params, fold, seed


def discover_runs(results_dir: str | Path, baseline: str = "rf") -> list[Run]:
    """Every ``predictions.tsv`` under ``results_dir`` as a :class:`Run`, sorted.

    Folders whose path cannot be parsed are skipped with a warning naming them.

    Raises
    ------
    FileNotFoundError
        ``results_dir`` does not exist.
    InputError
        No usable run is found, or runs mix regression and classification.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    runs, skipped = [], []
    for path in sorted(results_dir.rglob("predictions.tsv")):
        relative = path.parent.relative_to(results_dir)
        try:
            model, params, fold, seed = parse_run_path(relative, baseline)
        except InputError as err:
            log.warning("skipping %s: %s", path, err)
            skipped.append(str(relative))
            continue
        frame = read_predictions(path)
        meta = read_metrics(path.parent / "metrics.json") if (
            path.parent / "metrics.json").is_file() else {}
        target = (meta.get("config") or {}).get("metadata_column") or meta.get("target", "target")
        runs.append(Run(model, params, fold, seed, path, frame, metrics_from_predictions(frame),
                        str(target)))
    if not runs:
        where = f"; skipped unparseable {first_items(skipped)}" if skipped else ""
        raise InputError(f"no predictions.tsv with a parseable path under {results_dir}{where}. "
                         "Expected finetune/<ablation>/fold~K/seed~S/ or rf/fold~K/seed~S/.")
    tasks = sorted({r.metrics["task"] for r in runs})
    if len(tasks) > 1:
        raise InputError(f"{results_dir} mixes {' and '.join(tasks)} runs; compare one target "
                         "at a time (point --results-dir at one target's results).")
    return sorted(runs, key=lambda r: (r.model, _order(r.fold), _order(r.seed)))


def _order(value):
    return -1 if value is None else value


def _baseline_for(run: Run, rf_runs: list[Run]) -> Run | None:
    same_fold = [r for r in rf_runs if r.fold == run.fold]
    same_seed = [r for r in same_fold if r.seed == run.seed]
    return (same_seed or same_fold or [None])[0]


def pair_with_baseline(run: Run, rf: Run, task: str) -> PairedRun:
    """Align a run with its RF run on their common samples that have an actual value.

    Raises
    ------
    InputError
        No common samples, differing class columns, or different actual values for a sample.
    """
    cols = ["sample_id", "actual", "prediction"] + [c for c in run.predictions
                                                    if c.startswith("prob_")]
    merged = run.predictions[cols].merge(rf.predictions[cols], on="sample_id",
                                         suffixes=("", "_rf"))
    merged = merged[merged["actual"].notna()]
    if merged.empty or (task == "classification"
                        and prediction_classes(run.predictions)
                        != prediction_classes(rf.predictions)):
        raise InputError(f"{run.path} and {rf.path} share no evaluated samples or classes. "
                         "Evaluate both on the same split.")
    if task == "regression":
        differ = ~np.isclose(merged["actual"], merged["actual_rf"], rtol=1e-6, atol=1e-9)
    else:
        differ = merged["actual"].astype(str) != merged["actual_rf"].astype(str)
    if differ.any():
        raise InputError(f"actual values differ between {run.path} and {rf.path} for "
                         f"{first_items(merged['sample_id'][differ])} samples; both must hold the "
                         "original-scale target. Regenerate the predictions.")
    if task == "regression":
        return PairedRun(merged["actual"].to_numpy(float), merged["prediction"].to_numpy(float),
                         merged["prediction_rf"].to_numpy(float))
    classes = prediction_classes(run.predictions)
    index = {c: k for k, c in enumerate(classes)}
    actual = merged["actual"].astype(str).map(index).fillna(-1).to_numpy(int)
    prob = [f"prob_{c}" for c in classes]
    return PairedRun(actual, merged[prob].to_numpy(float),
                     merged[[f"{p}_rf" for p in prob]].to_numpy(float))


def comparison_table(runs: list[Run], baseline: str = "rf", n_bootstrap: int = 2000,
                     seed: int = 0) -> pd.DataFrame:
    """Per model: mean and sd of each metric over runs and the paired bootstrap difference to RF.

    Columns: model, n_runs, n_folds, n_seeds, n_samples, then per metric ``<m>_mean``, ``<m>_sd``,
    ``<m>_diff``, ``<m>_ci_low``, ``<m>_ci_high``. Rows: best primary metric (R² or balanced
    accuracy) first; the RF row has empty differences. The bootstrap of each model is seeded from
    ``seed`` and the model name, so the table is reproducible.
    """
    task = runs[0].metrics["task"]
    names = metric_names(task)
    rf_runs = [r for r in runs if r.model == baseline]
    if not rf_runs:
        log.warning("no %s runs found: differences to the baseline are left empty", baseline)
    rows = []
    for model in sorted({r.model for r in runs}):
        own = [r for r in runs if r.model == model]
        row = {"model": model, "n_runs": len(own), "n_folds": len({r.fold for r in own}),
               "n_seeds": len({r.seed for r in own}),
               "n_samples": int(sum(r.metrics["n"] for r in own))}
        for m in names:
            values = np.array([np.nan if r.metrics[m] is None else r.metrics[m] for r in own])
            row[f"{m}_mean"] = np.nanmean(values) if np.any(~np.isnan(values)) else np.nan
            row[f"{m}_sd"] = np.nanstd(values, ddof=1) if np.sum(~np.isnan(values)) > 1 else np.nan
        row.update(_differences(own, rf_runs, model, baseline, task, n_bootstrap, seed))
        rows.append(row)
    table = pd.DataFrame(rows)
    primary = f"{PRIMARY[task]}_mean"
    return table.sort_values([primary, "model"], ascending=[False, True],
                             na_position="last", kind="stable").reset_index(drop=True)


def _differences(own, rf_runs, model, baseline, task, n_bootstrap, seed) -> dict:
    empty = {f"{m}_{k}": np.nan for m in metric_names(task) for k in ("diff", "ci_low", "ci_high")}
    if model == baseline:
        return empty
    pairs, unpaired = [], []
    for run in own:
        rf = _baseline_for(run, rf_runs)
        if rf is None:
            unpaired.append(str(run.path.parent))
        else:
            pairs.append(pair_with_baseline(run, rf, task))
    if unpaired and rf_runs:
        log.warning("%s runs of %s have no %s run of the same fold: %s", len(unpaired), model,
                    baseline, first_items(unpaired))
    if not pairs:
        return empty
    rng_seed = [seed, zlib.crc32(model.encode("utf-8"))]
    result = paired_bootstrap(pairs, task, n_bootstrap, seed=rng_seed)
    return {f"{m}_{k}": (np.nan if v is None else v)
            for m, stats in result.items() for k, v in stats.items()}


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: model, fold, seed, n and its metrics (for ``runs.tsv``)."""
    rows = [{"model": r.model, "fold": r.fold, "seed": r.seed,
             **{k: v for k, v in r.metrics.items() if k != "task"}} for r in runs]
    return pd.DataFrame(rows).astype({"fold": "Int64", "seed": "Int64"})


def task_of(runs: list[Run]) -> str:
    """The runs' common task."""
    return prediction_task(runs[0].predictions)
