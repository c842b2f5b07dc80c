"""The explain part of the comparison report: each fine-tuned run's ``explain/explain.json``
(written by ``aam explain`` beside its predictions) summarised as rank agreement with the forest
and the linear model, and, on the simulator, how well each ranks the signal ASVs of its truth.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXPLAIN_DIR = "explain"


def explain_table(runs, labels: dict[str, str], baseline: str = "rf") -> pd.DataFrame:
    """One row per fine-tuned run that has an explanation: model, label, fold, seed, the rank
    agreement with the forest (Spearman over the union of top-50, overlap of top-20), the
    completeness gap and the figure's path. Empty when no run was explained."""
    rows = []
    for run in runs:
        path = run.path.parent / EXPLAIN_DIR / "explain.json"
        if run.model == baseline or not path.is_file():
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("skipping unreadable %s", path)
            continue
        agreement = summary.get("rank_agreement_with_rf") or {}
        linear = summary.get("rank_agreement_with_linear") or {}
        truth = summary.get("truth") or {}
        rows.append({"model": run.model, "label": labels.get(run.model, run.model),
                     "fold": run.fold, "seed": run.seed,
                     "spearman_top50_union": agreement.get("spearman_top50_union", np.nan),
                     "overlap_top20": agreement.get("overlap_top20", np.nan),
                     "spearman_linear": linear.get("spearman_top50_union", np.nan),
                     **{f"truth_{who}": truth.get(f"{who}_auroc", np.nan)
                        for who in ("aam", "rf", "linear")},
                     "completeness_gap": (summary.get("completeness") or {}).get(
                         "max_relative_gap", np.nan),
                     "figure": str(path.with_name("attributions.svg"))})
    return pd.DataFrame(rows)


def explain_markdown(table: pd.DataFrame) -> list[str]:
    """The summary.md section: per model, mean rank agreement with the forest over its runs."""
    if table.empty:
        return []
    lines = ["", "## Which ASVs drive the predictions", "",
             "Integrated-gradient attributions of each model on its test samples (aam explain), "
             "ranked against the random forest's impurity importances: Spearman correlation over "
             "the union of both top-50 ASV lists and the share of shared ASVs among both top-20 "
             "(mean over runs). Figures: `explain/attributions.svg` in each run folder.", "",
             "| model | runs | Spearman (top-50 union) | top-20 overlap | Spearman vs linear "
             "(top-50 union) | figure |",
             "|---|---|---|---|---|---|"]
    for label, group in table.groupby("label", sort=False):
        lines.append(f"| {label} | {len(group)} | {group['spearman_top50_union'].mean():.3f} | "
                     f"{group['overlap_top20'].mean():.2f} | {_mean(group['spearman_linear'])} | "
                     f"{group['figure'].iloc[0]} |")
    truth = table.dropna(subset=["truth_aam"]) if "truth_aam" in table else table.iloc[:0]
    if not truth.empty:
        lines += ["", "The simulator's truth (`truth.json`): how well each model's importances "
                  "rank the signal ASVs above the others (AUROC over every ASV; 0.5 = chance), "
                  "AAM's attributions beside the forest's and the linear model's importances "
                  "of the same runs.", "",
                  "| model | runs | AAM | random forest | linear (CLR) |", "|---|---|---|---|---|"]
        for label, group in truth.groupby("label", sort=False):
            lines.append(f"| {label} | {len(group)} | {_mean(group['truth_aam'])} | "
                         f"{_mean(group['truth_rf'])} | {_mean(group['truth_linear'])} |")
    return lines


def _mean(values: pd.Series) -> str:
    values = values.dropna()
    return f"{values.mean():.3f}" if len(values) else "n/a"


__all__ = ["EXPLAIN_DIR", "explain_markdown", "explain_table"]
