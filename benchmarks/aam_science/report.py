"""Tables of the real-data benchmark: metrics per variant, and the paired subject-bootstrap
interval of each variant's difference to the random forest."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pandas as pd

from aam.reports.stats import BETTER, WORSE, interval_verdict, subject_bootstrap

from aam_science.runner import StudyResult

HEADLINE = {"regression": ("r2", "mae"), "classification": ("auc", "balanced_accuracy")}


def comparison(result: StudyResult, n_bootstrap: int) -> pd.DataFrame:
    """One row per variant: mean metric over runs and the difference to its forest (per-seed
    rows against the per-seed forests, the ensemble against the forests' averaged output)."""
    task = result.study.task
    rows = []
    for variant, values in result.runs.items():
        if variant.startswith("rf"):
            continue
        baseline = result.runs["rf-ensemble" if variant.endswith("ensemble") else "rf"]
        stats = subject_bootstrap(task, result.actual, values, baseline, result.subjects,
                                  n_bootstrap=n_bootstrap, seed=0)
        primary, secondary = HEADLINE[task]
        rows.append({"study": result.study.name, "task": task, "variant": variant,
                     "runs": values.shape[0], "metric": primary,
                     "model": stats[primary]["model"], "rf": stats[primary]["rf"],
                     "diff": stats[primary]["diff"], "ci_low": stats[primary]["ci_low"],
                     "ci_high": stats[primary]["ci_high"],
                     f"model_{secondary}": stats[secondary]["model"],
                     f"rf_{secondary}": stats[secondary]["rf"]})
    return pd.DataFrame(rows)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def verdict(row: pd.Series) -> str:
    word = interval_verdict(row["ci_low"], row["ci_high"])
    return {BETTER: "better than RF", WORSE: "RF better"}.get(word, word)


def markdown(table: pd.DataFrame, header: dict) -> str:
    """The report: how it was run, then one table row per study and variant."""
    lines = ["# AAM vs random forest on real data", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", "| study | variant | runs | metric | AAM | RF | AAM - RF | 95% CI (subjects) | "
              "verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['study']} | {row['variant']} | {row['runs']} | {row['metric']} | "
                     f"{_fmt(row['model'])} | {_fmt(row['rf'])} | {_fmt(row['diff'])} | "
                     f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}] | {verdict(row)} |")
    lines += ["", "Metrics are computed on the pooled out-of-fold predictions of each run (every "
              "sample is predicted once, by the fold that held its subject out) and averaged "
              "over runs (seeds). The interval resamples subjects with replacement (all samples "
              "of a drawn subject), recomputes both models' metrics on the same resample, and "
              "takes the 2.5 / 97.5 percentiles of the mean-over-seeds difference. `aam-ensemble`"
              " averages the seeds' predictions and is compared with the forests' averaged "
              "predictions.", ""]
    return "\n".join(lines)


def ablation_comparison(result: StudyResult, base: str, n_bootstrap: int) -> pd.DataFrame:
    """One row per ablation row: its metric, the full model's (``base``), and the paired
    subject-bootstrap interval of full - row (what the part the row changes adds)."""
    task = result.study.task
    primary, secondary = HEADLINE[task]
    rows = []
    for name, values in result.runs.items():
        if name == base:
            continue
        stats = subject_bootstrap(task, result.actual, result.runs[base], values,
                                  result.subjects, n_bootstrap=n_bootstrap, seed=0)
        rows.append({"study": result.study.name, "task": task, "row": name,
                     "runs": values.shape[0], "metric": primary,
                     "row_value": stats[primary]["rf"], "full": stats[primary]["model"],
                     "full_minus_row": stats[primary]["diff"],
                     "ci_low": stats[primary]["ci_low"], "ci_high": stats[primary]["ci_high"],
                     f"row_{secondary}": stats[secondary]["rf"],
                     f"full_{secondary}": stats[secondary]["model"]})
    return pd.DataFrame(rows)


def ablation_verdict(row: pd.Series) -> str:
    """Words from the interval of full - row."""
    word = interval_verdict(row["ci_low"], row["ci_high"])
    return {BETTER: "full better", WORSE: "row better"}.get(word, word)


def ablation_markdown(table: pd.DataFrame, header: dict, changes: dict) -> str:
    """The ablation report: how it was run, what each row changes, then one line per study and
    row."""
    lines = ["# AAM ablations on real data", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", "Rows (each against `full`, the full model):", ""]
    lines += [f"- `{name}`: {change}" for name, change in changes.items()]
    lines += ["", "| study | row | metric | row | full | full - row | 95% CI (subjects) | "
              "verdict |", "|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['study']} | {row['row']} | {row['metric']} | "
                     f"{_fmt(row['row_value'])} | {_fmt(row['full'])} | "
                     f"{_fmt(row['full_minus_row'])} | [{_fmt(row['ci_low'])}, "
                     f"{_fmt(row['ci_high'])}] | {ablation_verdict(row)} |")
    lines += ["", "Metrics are computed on the pooled out-of-fold predictions (every sample is "
              "predicted once, by the fold that held its subject out). The interval resamples "
              "subjects with replacement (all samples of a drawn subject), recomputes both "
              "rows' metrics on the same resample, and takes the 2.5 / 97.5 percentiles of "
              "full - row: above 0, the part the row takes away (or changes) helps; `full "
              "better` / `row better` when the interval excludes 0.", ""]
    return "\n".join(lines)


def machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, GPU {gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}")
