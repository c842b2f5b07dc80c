"""Flags and sample lists shared by ``aam rf-baseline`` and ``aam linear-baseline``.

A baseline trains on every ``--train-samples`` list (the workflow passes the fold's training and,
when AAM's fitted head is refitted on them, validation samples: a baseline has no epoch to
select) and predicts ``--test-samples``. ``--val-samples`` is the old name of ``--test-samples``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from aam.data.sample_ids import read_sample_lists
from aam.data.taxonomy import TAXONOMY_FILE, read_taxonomy
from aam.cli.options import Option, add_options
from aam.errors import InputError

log = logging.getLogger("aam")


def add_baseline_flags(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Data, sample lists, output, fold and taxonomy, then the ``options`` of the baseline's
    config (RFConfig or LinearConfig: target column, task, categorical columns, seed,
    importances, ...)."""
    parser.add_argument("--data-dir", required=True, help="folder written by aam prepare")
    parser.add_argument("--train-samples", required=True, nargs="+", metavar="FILE",
                        help="training sample list(s); with several (e.g. train_samples.txt "
                             "val_samples.txt) the model trains on all of them")
    parser.add_argument("--test-samples", metavar="FILE",
                        help="the sample list to predict and score (e.g. test_samples.txt)")
    parser.add_argument("--val-samples", metavar="FILE",
                        help="old name of --test-samples (which wins when both are given): the "
                             "list predicted, not trained on")
    parser.add_argument("--output", required=True,
                        help="predictions.tsv; metrics.json, feature_importance.tsv and a "
                             "figure are written beside it")
    parser.add_argument("--taxonomy", help="QIIME 2 taxonomy TSV or .qza (Feature ID, Taxon); "
                                           "default: the taxonomy aam prepare stored, if any")
    parser.add_argument("--fold", type=int, help="fold number recorded in metrics.json")
    add_options(parser, options, "settings")


def baseline_samples(args: argparse.Namespace, known) -> tuple[list[str], list[str], str]:
    """(training IDs, predicted IDs, predicted list's path) from the flags.

    Raises
    ------
    InputError
        No list to predict, or lists that overlap or name samples the table lacks.
    """
    test = args.test_samples or args.val_samples
    if args.test_samples and args.val_samples and args.test_samples != args.val_samples:
        log.warning("--test-samples %s is predicted; --val-samples %s (its old name) is "
                    "ignored. To train on validation samples, list them under --train-samples.",
                    args.test_samples, args.val_samples)
    if not test:
        raise InputError("give the samples to predict with --test-samples FILE.")
    roles = {("--train-samples" if i == 0 else f"--train-samples ({i + 1})"): path
             for i, path in enumerate(args.train_samples)}
    role = "--test-samples" if args.test_samples else "--val-samples"  # as the user named it
    lists = read_sample_lists({**roles, role: test}, known)
    train = [s for name in roles for s in lists[name]]
    return train, lists[role], test


def taxonomy_of(args: argparse.Namespace):
    """The ``--taxonomy`` file's taxa, else the taxonomy ``aam prepare`` stored, else None."""
    stored = Path(args.data_dir) / TAXONOMY_FILE
    path = args.taxonomy or (stored if stored.is_file() else None)
    return read_taxonomy(path) if path else None


def log_metrics(name: str, metrics: dict, source: str) -> None:
    shown = {k: metrics[k] for k in ("r2", "mae", "rmse", "accuracy", "auc") if k in metrics}
    log.info("%s on %d samples of %s: %s", name, metrics["n"], source, shown)
