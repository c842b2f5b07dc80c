"""The comparison report: tables, figures, a verdict in words (summary.md) and a report caption."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aam.atomic import atomic_path, write_text
from aam.errors import InputError
from aam.metrics import HIGHER_IS_BETTER, metric_names
from aam.reports import plots
from aam.reports.columns import add_report_columns, metrics_table, verdict_word
from aam.reports.compare import PRIMARY, comparison_table, runs_table
from aam.reports.explanations import explain_markdown, explain_table
from aam.permutation import INERT_THRESHOLD
from aam.reports.labels import model_labels, read_labels
from aam.reports.runs import discover_runs, read_run_list
from aam.settings import setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareConfig:
    """Settings of ``aam compare``."""

    results_dir: str = setting(help="tree with finetune/<ablation>/fold~K/seed~S/ and "
                               "rf/fold~K/seed~S/ folders holding predictions.tsv; a run's path "
                               "below it names its model, fold and seed")
    output_dir: str = setting(help="where the report files go")
    baseline: str = setting("rf", "path segment of the baseline runs")
    other_baselines: tuple[str, ...] = setting(
        ("linear",), "comma-separated path segments of further baselines compared with every "
        "model ('' for none); skipped when they have no runs")
    n_bootstrap: int = setting(2000, "paired bootstrap replicates for the 95% CI")
    seed: int = setting(0, "bootstrap seed")
    png: bool = setting(True, "a PNG twin of every SVG figure (--no-png: SVG only)")
    figures: bool = setting(True, "draw the figures (--no-figures: tables and text only)")
    run_list: str | None = setting(
        None, "read only the runs named in this file (one predictions.tsv or run folder a line, "
        "inside --results-dir) instead of every predictions.tsv under --results-dir")
    labels: str | None = setting(
        None, "TSV with columns model and label: readable model names for the summary, tables "
        "and figures (default: derived from each ablation's settings, e.g. 'cross-attention, "
        "frozen')")
    figures_dir: str | None = setting(
        None, "folder for the figures (default: --output-dir); which figures exist depends on "
        "the task and on the metrics that have values")

    def __post_init__(self) -> None:
        if self.n_bootstrap < 1:
            raise InputError(f"n_bootstrap must be >= 1, got {self.n_bootstrap}.")
        if self.baseline in self.other_baselines:
            raise InputError(f"{self.baseline} is the baseline and one of the other baselines "
                             f"({', '.join(self.other_baselines)}); name it once.")

    @property
    def baselines(self) -> tuple[str, ...]:
        return (self.baseline, *self.other_baselines)


# The figures `aam compare` can draw, one list: a metric figure per metric of the task (skipped
# when the metric is NaN for every model), then the task's own figures. The workflow declares the
# figures folder, not these names, so a task or a NaN metric never breaks a run.
TASK_FIGURES = {"regression": ("predicted_vs_actual", "residuals"),
                "classification": ("roc", "confusion_matrix")}


def figure_names(task: str) -> tuple[str, ...]:
    """Every figure ``aam compare`` may write for ``task`` (``<name>.svg``)."""
    return tuple(f"metric_{m}" for m in metric_names(task)) + TASK_FIGURES[task]


def _fmt(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"


def verdict(row: pd.Series, metric: str, baseline: str = "rf",
            others: tuple[str, ...] = ()) -> str:
    """One sentence: does the model beat, match or trail the baseline on ``metric``?

    Uses the paired bootstrap interval of the difference: an interval above 0 (below 0 for error
    metrics) beats the baseline; one that includes 0 is indistinguishable. The comparison with
    each further baseline of ``others`` follows in a clause; their own rows say "(a baseline)".
    """
    label = plots.METRIC_LABELS.get(metric, metric)
    runs = f"over {row['n_folds']} fold(s) x {row['n_seeds']} seed(s)"
    diff, low, high = (row.get(f"{metric}_{k}") for k in ("diff", "ci_low", "ci_high"))
    name = f"**{row.get('label', row['model'])}**"
    if row["model"] in others:
        name += " (a baseline)"
    clauses = "".join(_other_clause(row, metric, o) for o in others if row["model"] != o
                      and row["model"] != baseline)
    return _versus(row, metric, baseline, label, runs, diff, low, high, name)[:-1] + clauses + "."


def _other_clause(row: pd.Series, metric: str, other: str) -> str:
    """``; vs linear: no clear difference (+0.010, 95% CI [-0.02, 0.04])`` ("" without runs)."""
    diff, low, high = (row.get(f"{metric}_{k}_vs_{other}") for k in ("diff", "ci_low", "ci_high"))
    word = verdict_word(diff, low, high, metric)
    if not word:
        return ""
    return f"; vs {other}: {word} ({diff:+.3f}, 95% CI [{_fmt(low)}, {_fmt(high)}])"


def _versus(row, metric, baseline, label, runs, diff, low, high, name) -> str:
    if row["model"] == baseline:
        return (f"{name} (the baseline) reaches {label} {_fmt(row[f'{metric}_mean'])} "
                f"(sd {_fmt(row[f'{metric}_sd'])}) {runs}.")
    if pd.isna(diff) or pd.isna(low) or pd.isna(high):
        return f"{name} has {label} {_fmt(row[f'{metric}_mean'])} {runs}; no {baseline} run " \
               "to compare with."
    interval = f"[{_fmt(low)}, {_fmt(high)}]"
    if low <= 0 <= high:
        return (f"{name} is indistinguishable from {baseline.upper()} on {label} "
                f"({diff:+.3f}, 95% CI {interval} includes 0) {runs}.")
    better = (low > 0) == HIGHER_IS_BETTER[metric]
    word = "beats" if better else "is worse than"
    amount = "lower" if diff < 0 else "higher"
    return (f"{name} {word} {baseline.upper()} by {abs(diff):.3f} {label} ({amount}; 95% CI "
            f"{interval}) {runs}.")


def selection_note(runs, baseline: str) -> list[str]:
    """How the models' best epochs were chosen, checked from each run's ``val_samples.txt``
    against the samples it is scored on, and its ``metrics.json`` (the selection margin)."""
    checked = leaked = 0
    margins = set()
    for run in runs:
        val = run.path.parent / "val_samples.txt"
        if run.model == baseline or not val.is_file():
            continue
        checked += 1
        chosen_on = set(val.read_text(encoding="utf-8").split())
        leaked += bool(chosen_on & set(run.predictions["sample_id"].astype(str)))
        margins |= _selection_margin(run.meta)
    if not checked:
        return []
    if not leaked:
        return ["", f"Model selection: each of the {checked} fine-tuned runs chose its best "
                    "epoch (and stopped early) on validation samples disjoint from the test "
                    "samples it is scored on (epoch 0: the abundance head's fitted start, its "
                    "penalty chosen by cross-validation over training subjects, or on the "
                    "validation samples without group_by; " + _margin_words(margins) + "; "
                    "when epoch 0 won, the head was refitted on the training + validation "
                    "samples, never on test samples)."]
    return ["", f"Caution: in {leaked} of {checked} fine-tuned runs the validation samples that "
                "chose the best epoch are also the scored test samples (split test_fraction 0 "
                "with inner_val_fraction 0), so those scores are optimistic."]


def _selection_margin(meta: dict) -> set:
    """{selection_se} of a run whose abundance head was fitted (from its metrics.json)."""
    if not meta.get("abundance_head_fit"):
        return set()
    return {float((meta.get("config") or {}).get("selection_se") or 0.0)}


def _margin_words(margins: set) -> str:
    """How a fine-tuned epoch could replace the fitted start, for the runs' margins."""
    if margins == {0.0} or not margins:
        return "the lowest validation loss chose between it and the fine-tuned epochs"
    shown = " or ".join(f"{m:g}" for m in sorted(margins))
    return (f"a fine-tuned epoch replaced it only when its validation loss was lower by more "
            f"than {shown} standard error of the per-subject difference (selection_se)")


def summary_markdown(table: pd.DataFrame, task: str, baseline: str, n_bootstrap: int,
                     selection: list[str] = (), others: tuple[str, ...] = ()) -> str:
    """``summary.md``: the verdict per model (best first; metadata-inert fusions apart, not
    ranked) and the main metrics, verdicts, selection and metadata permutation per model."""
    primary = PRIMARY[task]
    others = tuple(o for o in others if f"vs_{o}" in table)
    inert = _inert(table)
    also = "".join(f" (and to the {o} baseline)" for o in others)
    lines = [f"# Model comparison ({task})", "",
             f"Models ranked by mean {plots.METRIC_LABELS[primary]} on held-out samples; "
             f"differences to {baseline.upper()}{also} are paired on the same samples with "
             f"{n_bootstrap} bootstrap replicates (95% CI).", ""]
    lines += [f"- {verdict(row, primary, baseline, others)}"
              for _, row in table[~inert].iterrows()]
    if inert.any():
        unit = "target SD" if task == "regression" else "probability"
        lines += ["", "Metadata inert, not ranked against other fusions: shuffling their "
                      "categorical columns across the test samples moved their predictions by "
                      f"less than {INERT_THRESHOLD} {unit}, so their fusion made no "
                      "difference (they are the sequence-only model):", ""]
        lines += [f"- metadata inert: {verdict(row, primary, baseline, others)}"
                  for _, row in table[inert].iterrows()]
    lines += _tie_note(table)
    lines += _no_signal_warning(table, task)
    lines += list(selection)
    lines += [""] + metrics_table(table, task, baseline, others)
    return "\n".join(lines) + "\n"


def _tie_note(table: pd.DataFrame) -> list[str]:
    """A note naming models that share a rank: their predictions are identical."""
    if "rank" not in table:
        return []
    ranked = table[table["rank"].notna()]
    groups = [g for _, g in ranked.groupby("rank") if len(g) > 1]
    if not groups:
        return []
    names = "; ".join(" = ".join(f"**{x}**" for x in g.get("label", g["model"])) for g in groups)
    return ["", f"Same model, shared rank: {names} predict exactly the same on every test "
                "sample (e.g. fusions that all kept the same fitted start), so they are not "
                "ranked against each other."]


def _inert(table: pd.DataFrame) -> pd.Series:
    if "metadata_inert" not in table:
        return pd.Series(False, index=table.index)
    return table["metadata_inert"].fillna(False).astype(bool)


def _no_signal_warning(table: pd.DataFrame, task: str) -> list[str]:
    """A caution when no model beats predicting the mean (regression, best mean R² <= 0.05)."""
    if task != "regression" or table.empty:
        return []
    best = table["r2_mean"].max()
    if not best <= 0.05:  # also False for NaN
        return []
    return ["", f"Caution: no model explains this target on held-out samples (best mean R² "
                f"{_fmt(best)}); differences above are between predictors no better than the "
                "mean of the target."]


def report_section(table: pd.DataFrame, task: str, baseline: str) -> str:
    """``report_section.rst``: a caption for the Snakemake report (reStructuredText)."""
    primary = PRIMARY[task]
    text = [f"Comparison of {len(table)} model(s) with the {baseline.upper()} baseline "
            f"({task}). Rows of comparison.tsv give the mean and sd of each metric over folds "
            "and seeds and the paired bootstrap 95% CI of the difference to the baseline on the "
            "same held-out samples.", ""]
    inert = _inert(table)
    for i, row in table.iterrows():
        words = verdict(row, primary, baseline).replace("**", "*")
        text.append("* " + ("metadata inert (not ranked): " if inert[i] else "") + words)
    return "\n".join(text) + "\n"


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="")


def write_report(cfg: CompareConfig) -> pd.DataFrame:
    """Read the runs, write comparison.tsv, runs.tsv, figures, summary.md, report_section.rst.

    Every run is read and checked before the first file is written, so bad input leaves no
    output.

    Returns
    -------
    pandas.DataFrame
        The comparison table (one row per model, best first).
    """
    listed = read_run_list(cfg.run_list) if cfg.run_list else None
    runs = discover_runs(cfg.results_dir, cfg.baselines, listed)
    task = runs[0].metrics["task"]
    log.info("comparing %d runs of %d models (%s)", len(runs), len({r.model for r in runs}), task)
    table = comparison_table(runs, cfg.baseline, cfg.n_bootstrap, cfg.seed, cfg.other_baselines)
    labels = model_labels(runs, read_labels(cfg.labels) if cfg.labels else None, cfg.baseline)
    table.insert(1, "label", table["model"].map(labels))
    table = add_report_columns(table, runs, cfg.baselines, PRIMARY[task],
                               plots.METRIC_LABELS[PRIMARY[task]])
    explained = explain_table(runs, labels, cfg.baseline)
    out = Path(cfg.output_dir)
    _write_table(table, out / "comparison.tsv")
    per_run = runs_table(runs)
    per_run.insert(1, "label", per_run["model"].map(labels))
    _write_table(per_run, out / "runs.tsv")
    if not explained.empty:
        _write_table(explained, out / "explain_agreement.tsv")
    pooled = {labels[m]: pd.concat([r.predictions for r in runs if r.model == m],
                                   ignore_index=True) for m in table["model"]}
    target = next((r.target for r in runs if r.target != "target"), "target")
    if cfg.figures:
        figures = Path(cfg.figures_dir or out)
        figures.mkdir(parents=True, exist_ok=True)
        _write_figures(table, pooled, task, target, figures, cfg.png)
    write_text(out / "summary.md", summary_markdown(table, task, cfg.baseline, cfg.n_bootstrap,
                                                    selection_note(runs, cfg.baseline),
                                                    cfg.other_baselines)
               + "".join(line + "\n" for line in explain_markdown(explained)))
    write_text(out / "report_section.rst", report_section(table, task, cfg.baseline))
    return table


def _write_figures(table, pooled, task, target, out: Path, png: bool) -> list[str]:
    """Draw the figures of :func:`figure_names` that have data; returns the names written."""
    drawn = {}
    for metric in metric_names(task):
        if table[f"{metric}_mean"].notna().any():
            drawn[f"metric_{metric}"] = plots.metric_intervals(
                table.assign(model=table["label"]), metric)
    if task == "regression":
        known = {m: f[f["actual"].notna()] for m, f in pooled.items()}
        known = {m: f for m, f in known.items() if len(f)}
        drawn["predicted_vs_actual"] = plots.predicted_vs_actual(known, target)
        drawn["residuals"] = plots.residuals(known, target)
    else:
        classes = [c[len("prob_"):] for c in next(iter(pooled.values())).columns
                   if c.startswith("prob_")]
        drawn["roc"] = plots.roc(pooled, classes)
        drawn["confusion_matrix"] = plots.confusion(pooled, classes)
    assert set(drawn) <= set(figure_names(task)), "a figure missing from figure_names"
    for name, fig in drawn.items():
        plots.save_figure(fig, out / f"{name}.svg", png)
    return list(drawn)
