"""``model-card.md`` beside every ``model.pt``: what a lab needs to share a trained model
responsibly (data, target, transform, settings, validation metrics with bootstrap CIs, software
version and commit, how the checkpoint was selected)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

import aam
from aam.atomic import write_text
from aam.metrics import metric_names
from aam.predictions import prediction_classes, read_predictions
from aam.reports.stats import classification_replicates, regression_replicates

log = logging.getLogger(__name__)

N_BOOTSTRAP = 1000


def git_commit(path: Optional[Path] = None) -> str:
    """The commit of the git checkout holding the ``aam`` package ('unknown' outside git)."""
    where = Path(path or Path(aam.__file__).resolve().parent)
    try:
        done = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def bootstrap_intervals(frame: pd.DataFrame, task: str, n: int = N_BOOTSTRAP,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile bootstrap interval of each metric over the samples of ``frame`` (a
    predictions table); metrics NaN in every replicate are left out."""
    known = frame[frame["actual"].notna()]
    if len(known) < 2:
        return {}
    rows = np.random.default_rng(seed).integers(0, len(known), size=(n, len(known)))
    if task == "regression":
        actual = known["actual"].to_numpy(float)
        reps = regression_replicates(actual[rows], known["prediction"].to_numpy(float)[rows])
    else:
        classes = prediction_classes(known)
        index = {c: k for k, c in enumerate(classes)}
        actual = known["actual"].astype(str).map(index).fillna(-1).to_numpy(int)
        proba = known[[f"prob_{c}" for c in classes]].to_numpy(float)
        reps = classification_replicates(actual[rows], proba[rows])
    out = {}
    for name, values in reps.items():
        values = values[np.isfinite(values)]
        if len(values):
            out[name] = (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
    return out


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) \
        else f"{value:.4g}"


def model_card(summary: dict, info: dict, data_dir: str, run_dir: Path,
               encoder: Optional[str] = None) -> str:
    """The card's Markdown from ``metrics.json`` (``summary``) and ``prepare.json`` (``info``)."""
    cfg = summary.get("config") or {}
    data_cfg, train = cfg.get("data") or {}, cfg.get("train") or {}
    task = summary.get("task", "")
    inputs = info.get("inputs") or {}
    val_path = run_dir / "val_predictions.tsv"
    intervals = bootstrap_intervals(read_predictions(val_path), task) if val_path.is_file() \
        else {}
    lines = [f"# Model card: {cfg.get('target_column', '?')} ({task})", "",
             "## Data", "",
             f"- prepared data: `{data_dir}` ({info.get('n_samples')} samples x "
             f"{info.get('n_asvs')} ASVs after filtering)",
             f"- study inputs: table `{inputs.get('table')}`, metadata `{inputs.get('metadata')}`"
             + (f", tree `{inputs['tree']}`" if inputs.get("tree") else "")
             + (f", distances `{inputs['distance_matrix']}`" if inputs.get("distance_matrix")
                else ""),
             f"- target: `{cfg.get('target_column')}`; target transform: "
             f"`{data_cfg.get('target_transform', 'none')}` (statistics from the training samples "
             "only, stored in model.pt)",
             "- categorical columns: "
             f"{', '.join(data_cfg.get('categorical_columns') or []) or 'none'}",
             f"- training samples: `train_samples.txt`; validation samples: `val_samples.txt` "
             f"({summary.get('n')})", "",
             "## Validation metrics", "",
             f"On the {summary.get('n')} validation samples (original scale"
             + ("; out-of-fold predictions of the chosen epoch" if summary.get("selection_folds")
                else "") + "), with 95% percentile "
             f"bootstrap intervals over samples ({N_BOOTSTRAP} replicates). The held-out test "
             "comparison with the random forest is in the workflow's report.", "",
             "| metric | value | 95% CI |", "|---|---|---|"]
    for name in metric_names(task) if task else []:
        low, high = intervals.get(name, (None, None))
        ci = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else "n/a"
        lines.append(f"| {name} | {_fmt(summary.get(name))} | {ci} |")
    lines += ["", "## How it was selected", "",
              _inner_folds_note(summary) if summary.get("selection_folds") else
              f"The checkpoint of epoch {summary.get('best_epoch')} of "
              f"{summary.get('epochs_run')} run: the lowest validation loss of the target "
              f"(patience {train.get('patience')}; seed {summary.get('seed')}, fold "
              f"{summary.get('fold')}). Test samples were never seen during training or "
              "selection." + _head_fit_note(summary.get("abundance_head_fit"),
                                            summary.get("abundance_head_refit"),
                                            cfg.get("selection_se"),
                                            "subject" if cfg.get("group_by") else "sample"),
              "",
              "## Settings", "",
              f"- fusion: {(cfg.get('fusion') or {}).get('name')}; frozen base: "
              f"{cfg.get('freeze_base')}; abundance head: "
              f"{cfg.get('abundance_head_features')} features, width "
              f"{cfg.get('abundance_head_width')}; pretrained encoder: "
              f"{encoder or 'none (trained from scratch)'}",
              f"- model: {cfg.get('model')}",
              f"- training: epochs {train.get('epochs')}, lr {train.get('lr')}, batch size "
              f"{data_cfg.get('batch_size')}, token limit {data_cfg.get('token_limit')}, ASV "
              f"sampling {data_cfg.get('asv_sampling')}",
              "- the full resolved configuration: `config.resolved.yaml` (also inside model.pt)",
              "", "## Software", "",
              f"- aam {aam.__version__}, commit {git_commit()}",
              "- load with `aam predict --model model.pt` or `aam explain --model model.pt`", ""]
    return "\n".join(lines)


def write_model_card(run_dir: str | Path, summary: dict, info: dict, data_dir: str,
                     encoder: Optional[str] = None) -> Path:
    """Write ``model-card.md`` into ``run_dir`` (atomically) and return its path."""
    path = Path(run_dir) / "model-card.md"
    write_text(path, model_card(summary, info, str(data_dir), Path(run_dir), encoder))
    return path


__all__ = ["bootstrap_intervals", "git_commit", "model_card", "write_model_card"]


def _head_fit_note(fit: dict | None, refit: dict | None = None,
                   margin: float | None = None, unit: str = "subject") -> str:
    """Sentences on the abundance head's fitted start, the margin a fine-tuned epoch had to
    clear, and the refit (empty when the head was not fitted)."""
    if not fit:
        return ""
    note = (f" Epoch 0 is the fitted start: the abundance head's last layer fitted in closed "
            f"form on the {fit['n_train']} training samples, its L2 penalty "
            f"{fit['penalty']:.3g} chosen by {fit['chosen_by']}.")
    if fit.get("n_category_features"):
        note += (f" The same fit holds the main effects of the categorical columns "
                 f"({fit['n_category_features']} one-hot columns); the fusion path learns what "
                 "is left.")
    if margin:
        note += (f" A fine-tuned epoch could replace it only with a validation loss lower by "
                 f"more than {margin:g} standard error of the per-{unit} difference "
                 "(`selection_loss`).")
    if refit:
        note += (f" The fitted start was the best epoch, so model.pt's head was then fitted "
                 f"again on all {refit['n_train']} training + validation samples (penalty "
                 f"{refit['penalty']:.3g}, chosen by {refit['chosen_by']}); the validation "
                 "metrics above are those of the selected model, before that refit.")
    return note


def _inner_folds_note(summary: dict) -> str:
    """How ``--selection-folds`` chose between the fitted start and fine-tuning."""
    sel = summary["selection_folds"]
    losses = ", ".join(f"{v:.4g}" for v in sel["pooled_loss"])
    note = (f"Chosen on {sel['k']} inner folds of the {sel['n_subjects']} subjects "
            f"(`{sel['group_by']}`) of the {sel['n_samples']} given samples: for each fold the "
            "start was fitted and fine-tuned on the other folds and every epoch scored on it. "
            f"Pooled out-of-fold loss per epoch (epoch 0: the fitted start; mean over "
            f"subjects): {losses}. The lowest is epoch {sel['lowest_epoch']}, "
            f"{sel['difference']:+.4g} against the fitted start (standard error of the "
            f"per-subject difference {sel['standard_error']:.3g}); a fine-tuned epoch is kept "
            f"only when it is lower by more than {sel['selection_se']:g} standard error. "
            f"Decision: {sel['decision']}, epoch {sel['chosen_epoch']}. ")
    if sel["chosen_epoch"]:
        note += (f"model.pt is the start fitted on all given samples, then fine-tuned on them "
                 f"for exactly {sel['chosen_epoch']} epochs (no early stopping).")
    else:
        note += "model.pt is the start fitted on all given samples (no fine-tuning)."
    return note + (f" Seed {summary.get('seed')}, fold {summary.get('fold')}; test samples were "
                   "never seen during training or selection.")
