"""Compare each model of a set of runs with the random-forest baseline (and further baselines,
such as the linear model).

Metrics are recomputed from the predictions, so every model is scored the same way; differences
to a baseline are paired on the same held-out samples (see :mod:`aam.reports.runs` for which
runs are read and how they are named).
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd

from aam.errors import InputError, first_items
from aam.metrics import metric_names
from aam.predictions import prediction_classes, prediction_task
from aam.reports.runs import Run
from aam.reports.stats import PairedRun, paired_bootstrap

log = logging.getLogger(__name__)

PRIMARY = {"regression": "r2", "classification": "balanced_accuracy"}


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
                     seed: int = 0, others: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per model: mean and sd of each metric over runs and the paired bootstrap difference to RF.

    Columns: model, n_runs, n_folds, n_seeds, n_samples, then per metric ``<m>_mean``, ``<m>_sd``,
    ``<m>_diff``, ``<m>_ci_low``, ``<m>_ci_high``; for each further baseline ``b`` of ``others``
    that has runs, ``<m>_diff_vs_<b>``, ``<m>_ci_low_vs_<b>``, ``<m>_ci_high_vs_<b>`` (empty for
    the baselines). Rows: best primary metric (R² or balanced accuracy) first; the RF row has
    empty differences. The bootstrap of each model is seeded from ``seed`` and the model name
    (and the further baseline's), so the table is reproducible.
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
        for other in others:
            other_runs = [r for r in runs if r.model == other]
            if not other_runs:
                continue
            # a baseline's row has no difference to the further baselines
            name = model if model in (baseline, *others) else other
            diffs = _differences(own, other_runs, model, name, task, n_bootstrap,
                                 [seed, zlib.crc32(other.encode("utf-8"))])
            row.update({f"{key}_vs_{other}": value for key, value in diffs.items()})
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
    rng_seed = [*np.atleast_1d(seed).tolist(), zlib.crc32(model.encode("utf-8"))]
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
