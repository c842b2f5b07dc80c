"""Which runs a comparison reads, and the model, fold and seed each run's path names.

A run is a folder holding ``predictions.tsv`` (and usually ``metrics.json``) below a results
folder: ``finetune/{ablation}/fold~{k}/seed~{s}/`` or ``rf/fold~{k}/seed~{s}/``, where
``{ablation}`` is a Paramspace string such as
``categorical-fusion~cross-attention_freeze-base~true``. The runs are
every ``predictions.tsv`` found there, or only those a run list names.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aam.errors import InputError, first_items
from aam.predictions import metrics_from_predictions, read_metrics, read_predictions

log = logging.getLogger(__name__)

PAIR = re.compile(r"^([A-Za-z0-9.+-]+)~([^~_]+)$")


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
    meta: dict = field(default_factory=dict)  # the run's metrics.json ({} without one)


def parse_run_path(relative: Path, baseline: str | tuple[str, ...] = "rf"
                   ) -> tuple[str, dict, int | None, int | None]:
    """Model name, ablation parameters, fold and seed from a run folder's relative path.

    Plain segments (``finetune``) are ignored; ``fold~K``/``seed~S`` give the split and seed; a
    ``baseline`` segment (one name, or several such as ``("rf", "linear")``) names a baseline;
    other segments must be ``key~value`` pairs joined by ``_``.

    Raises
    ------
    InputError
        A segment is not parseable or the path names no model.
    """
    model, params, fold, seed, ablation = None, {}, None, None, []
    baselines = (baseline,) if isinstance(baseline, str) else tuple(baseline)
    for part in relative.parts:
        if part in baselines:
            model = part
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
        raise InputError(f"{relative} names no model: expected {'/ or '.join(baselines)}/ or an "
                         "ablation segment such as categorical-fusion~gmu.")
    return model, params, fold, seed


def read_run_list(path: str | Path) -> list[Path]:
    """The ``predictions.tsv`` files a run list names, in its order.

    A run list has one run a line: its ``predictions.tsv`` or the folder holding it (relative
    paths are relative to the current folder). Blank lines and lines starting with ``#`` are
    skipped. The workflow writes one with exactly the runs the config defines.

    Raises
    ------
    FileNotFoundError
        The list, or a ``predictions.tsv`` it names, does not exist.
    InputError
        The list cannot be read as text, names no run, or names a run twice.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run list not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise InputError(f"cannot read the run list {path} ({reason}); it must be a text file "
                         "with one predictions.tsv or run folder a line.") from err
    entries = [Path(line.strip()) for line in lines if line.strip()
               and not line.lstrip().startswith("#")]
    files = [entry / "predictions.tsv" if entry.is_dir() else entry for entry in entries]
    if not files:
        raise InputError(f"the run list {path} names no run; list one predictions.tsv or run "
                         "folder a line.")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"runs named in {path} but not found: {first_items(missing)}. "
                                "Finish those runs or remove them from the list.")
    twice = [f for f, n in Counter(os.path.abspath(f) for f in files).items() if n > 1]
    if twice:
        raise InputError(f"runs named twice in {path}: {first_items(twice)}. List each run once.")
    return files


def discover_runs(results_dir: str | Path, baseline: str | tuple[str, ...] = "rf",
                  listed: list[Path] | None = None) -> list[Run]:
    """Every ``predictions.tsv`` under ``results_dir``, or only the ``listed`` ones, as runs.

    A run's model, fold and seed come from its folder's path relative to ``results_dir``
    (:func:`parse_run_path`). Found folders whose path cannot be parsed are skipped with a
    warning naming them; a listed run that cannot be parsed, or lies outside ``results_dir``,
    is an error.

    Raises
    ------
    FileNotFoundError
        ``results_dir`` or a listed file does not exist.
    InputError
        No usable run is found, a listed run cannot be labelled, or runs mix regression and
        classification.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    paths = sorted(results_dir.rglob("predictions.tsv")) if listed is None else map(Path, listed)
    runs, skipped = [], []
    for path in paths:
        try:
            labels = parse_run_path(_run_folder(path, results_dir), baseline)
        except InputError as err:
            if listed is not None:
                raise
            log.warning("skipping %s: %s", path, err)
            skipped.append(str(path.parent.relative_to(results_dir)))
            continue
        runs.append(_read_run(path, *labels))
    if not runs:
        where = f"; skipped unparseable {first_items(skipped)}" if skipped else ""
        raise InputError(f"no predictions.tsv with a parseable path under {results_dir}{where}. "
                         "Expected finetune/<ablation>/fold~K/seed~S/ or rf/fold~K/seed~S/.")
    tasks = sorted({r.metrics["task"] for r in runs})
    if len(tasks) > 1:
        raise InputError(f"{results_dir} mixes {' and '.join(tasks)} runs; compare one target "
                         "at a time (point --results-dir at one target's results).")
    return sorted(runs, key=lambda r: (r.model, _order(r.fold), _order(r.seed)))


def _run_folder(path: Path, results_dir: Path) -> Path:
    """The folder of ``path`` relative to ``results_dir`` (``..`` resolved, links kept)."""
    folder, root = Path(os.path.abspath(path.parent)), Path(os.path.abspath(results_dir))
    if not folder.is_relative_to(root):
        raise InputError(f"{path} is not inside the results folder {results_dir}; a run is "
                         "named by its path below --results-dir, so list runs inside it.")
    return folder.relative_to(root)


def _read_run(path: Path, model: str, params: dict, fold: int | None, seed: int | None) -> Run:
    frame = read_predictions(path)
    meta_path = path.parent / "metrics.json"
    meta = read_metrics(meta_path) if meta_path.is_file() else {}
    target = (meta.get("config") or {}).get("metadata_column") or meta.get("target", "target")
    return Run(model, params, fold, seed, path, frame, metrics_from_predictions(frame),
               str(target), meta)


def _order(value):
    return -1 if value is None else value
