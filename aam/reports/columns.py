"""Columns of the comparison that keep the report from ranking noise: the verdict against each
baseline in words, how each AAM model's epoch was selected (from each run's ``metrics.json``),
the metadata permutation check (each run's ``permutation.json``, written by ``aam predict
--permutation-check``), and a rank that leaves metadata-inert fusions out.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from aam.metrics import HIGHER_IS_BETTER, metric_names
from aam.permutation import INERT_THRESHOLD, PERMUTATION_FILE
from aam.reports.stats import BETTER, UNCLEAR, WORSE, interval_verdict

log = logging.getLogger(__name__)



def verdict_word(diff, low, high, metric: str) -> str:
    """``better`` / ``worse`` when the 95% interval of the difference excludes 0 (in the
    metric's good direction or not), ``no clear difference`` when it includes 0; "" without
    an interval."""
    if any(v is None or pd.isna(v) for v in (diff, low, high)):
        return ""
    word = interval_verdict(low, high)
    if word == UNCLEAR or HIGHER_IS_BETTER[metric]:
        return word
    return WORSE if word == BETTER else BETTER


def selection_cell(runs) -> str:
    """How the runs of one model chose their epoch: ``start kept 3/3`` (epoch 0, the fitted
    abundance head) or ``start kept 1/3; epochs 4, 7``; "" when no run recorded it."""
    epochs = [r.meta.get("best_epoch") for r in runs if r.meta.get("best_epoch") is not None]
    if not epochs:
        return ""
    kept = sum(int(e) == 0 for e in epochs)
    later = sorted(int(e) for e in epochs if int(e) != 0)
    text = f"start kept {kept}/{len(epochs)}"
    if later:
        text += "; epoch" + ("s " if len(later) > 1 else " ") + ", ".join(map(str, later))
    return text


def read_permutation(run) -> dict | None:
    """The ``permutation.json`` beside a run's predictions (None when absent or unreadable)."""
    path = run.path.parent / PERMUTATION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        log.warning("skipping unreadable %s", path)
        return None


def permutation_columns(runs, metric_label: str) -> dict:
    """Per model: mean over its runs of the prediction and metric change when every categorical
    column is shuffled, whether that makes it metadata inert, and a cell for the summary."""
    checks = [c for c in map(read_permutation, runs) if c and c.get("columns")]
    empty = {"metadata_prediction_change": np.nan, "metadata_metric_change": np.nan,
             "metadata_inert": pd.NA}
    if not checks:
        no_columns = any(c is not None for c in map(read_permutation, runs))
        return {**empty, "metadata_permutation": "no metadata" if no_columns else ""}
    joint = [c["columns"].get("all") or next(iter(c["columns"].values())) for c in checks]
    moved = float(np.mean([j["prediction_change"] for j in joint]))
    changes = [j["metric_change"] for j in joint if j.get("metric_change") is not None]
    metric = float(np.mean(changes)) if changes else np.nan
    threshold = max(float(c.get("threshold", INERT_THRESHOLD)) for c in checks)
    inert = moved < threshold
    unit = "SD" if checks[0].get("task") == "regression" else "prob."
    cell = (f"predictions move {moved:.3f} {unit}, {metric_label} "
            f"{'n/a' if np.isnan(metric) else f'{metric:+.3f}'}")
    return {"metadata_prediction_change": moved, "metadata_metric_change": metric,
            "metadata_inert": inert,
            "metadata_permutation": ("metadata inert: " if inert else "") + cell}


def add_report_columns(table: pd.DataFrame, runs, baselines: tuple[str, ...], metric: str,
                       metric_label: str) -> pd.DataFrame:
    """``table`` (from :func:`aam.reports.compare.comparison_table`) with ``vs_<baseline>``
    verdict words on ``metric``, ``selection``, the metadata permutation columns and ``rank``:
    ranked by ``metric`` among every model except metadata-inert ones (rank empty), which
    follow the ranked rows."""
    primary = baselines[0]
    others = [b for b in baselines[1:] if f"{metric}_diff_vs_{b}" in table]  # those with runs
    rows = []
    for _, row in table.iterrows():
        own = [r for r in runs if r.model == row["model"]]
        extra = {f"vs_{primary}": "" if row["model"] == primary else verdict_word(
            row.get(f"{metric}_diff"), row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high"),
            metric)}
        for other in others:
            extra[f"vs_{other}"] = verdict_word(*(row.get(f"{metric}_{k}_vs_{other}")
                                                  for k in ("diff", "ci_low", "ci_high")), metric)
        is_baseline = row["model"] in baselines
        extra["selection"] = "" if is_baseline else selection_cell(own)
        extra.update(permutation_columns(own, metric_label) if not is_baseline else
                     {"metadata_prediction_change": np.nan, "metadata_metric_change": np.nan,
                      "metadata_inert": pd.NA, "metadata_permutation": ""})
        rows.append(extra)
    out = pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    inert = out["metadata_inert"].fillna(False).astype(bool)
    ranked = out[~inert].sort_values(f"{metric}_mean", ascending=not HIGHER_IS_BETTER[metric],
                                     na_position="last", kind="stable")
    ranked = ranked.assign(rank=pd.array(_tied_ranks(list(ranked["model"]), runs),
                                         dtype="Int64"))
    unranked = out[inert].assign(rank=pd.array([pd.NA] * int(inert.sum()), dtype="Int64"))
    result = pd.concat([ranked, unranked], ignore_index=True)
    return result[["rank"] + [c for c in result.columns if c != "rank"]]


def same_predictions(a: list, b: list) -> bool:
    """Do two models' runs (paired by fold and seed) predict exactly the same (within 1e-9)?"""
    pairs = {(r.fold, r.seed): r for r in b}
    if len(a) != len(b) or any((r.fold, r.seed) not in pairs for r in a):
        return False
    for run in a:
        other = pairs[(run.fold, run.seed)].predictions
        merged = run.predictions.merge(other, on="sample_id", suffixes=("", "_b"))
        probs = [c for c in run.predictions if c.startswith("prob_")]
        cols = probs or ["prediction"]  # classification: the probabilities decide
        if len(merged) != len(run.predictions) or len(other) != len(run.predictions):
            return False
        for c in cols:
            if c + "_b" not in merged or not np.allclose(
                    merged[c].to_numpy(float), merged[c + "_b"].to_numpy(float), rtol=0,
                    atol=1e-9, equal_nan=True):
                return False
    return True


def _tied_ranks(models: list[str], runs) -> list[int]:
    """1, 2, ... in order, except that a model predicting exactly as the one ranked above it
    shares its rank (two fusion rows that are the same model are not ranked against each
    other)."""
    ranks = []
    for i, model in enumerate(models):
        same = i and same_predictions([r for r in runs if r.model == model],
                                      [r for r in runs if r.model == models[i - 1]])
        ranks.append(ranks[-1] if same else i + 1)
    return ranks


def metrics_table(table: pd.DataFrame, task: str, baseline: str, others) -> list[str]:
    """The markdown table: rank, model, runs, metrics, verdicts, selection, permutation."""
    from aam.reports.plots import METRIC_LABELS

    names = metric_names(task)
    verdicts = [f"vs_{b}" for b in (baseline, *others) if f"vs_{b}" in table]
    extra = [c for c in ("selection", "metadata_permutation") if c in table]
    heads = (["rank", "model", "runs"] + [METRIC_LABELS[m] for m in names]
             + [f"vs {BASELINE_WORDS.get(c[3:], c[3:])}" for c in verdicts]
             + [EXTRA_HEADS[c] for c in extra])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, row in table.iterrows():
        rank = row.get("rank")
        cells = ["" if rank is None or pd.isna(rank) else str(int(rank)),
                 str(row.get("label", row["model"])), str(row["n_runs"])]
        cells += [f"{_fmt3(row[f'{m}_mean'])} ± {_fmt3(row[f'{m}_sd'])}" for m in names]
        cells += [str(row[c]) if isinstance(row[c], str) else "" for c in verdicts + extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


BASELINE_WORDS = {"rf": "forest", "linear": "linear"}
EXTRA_HEADS = {"selection": "selection (epoch)", "metadata_permutation": "metadata permutation"}


def _fmt3(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"
