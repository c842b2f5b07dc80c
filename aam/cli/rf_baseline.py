"""``aam rf-baseline``: random forest on the same prepared table and split as AAM.

Trains on ``--train-samples`` and evaluates on ``--val-samples`` (the workflow passes the fold's
``test_samples.txt`` there to evaluate on the test split, as ``aam predict`` does).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aam.baselines.rf import RFConfig, fit_random_forest, write_rf_outputs
from aam.cli.common import Outputs, add_common_flags, run
from aam.data.prepared import load_prepared
from aam.data.sample_ids import read_sample_lists
from aam.data.taxonomy import TAXONOMY_FILE, read_taxonomy
from aam.errors import InputError
from aam.validate import check_finite

log = logging.getLogger("aam")


def _max_features(text: str):
    if text in ("sqrt", "log2"):
        return text
    try:
        value = float(text)
        check_finite(value, "--max-features")
    except ValueError:
        raise InputError(f"--max-features must be sqrt, log2, a fraction in (0, 1] or a count; "
                         f"got {text!r}.") from None
    return int(value) if value > 1 else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam rf-baseline", description=__doc__)
    parser.add_argument("--data-dir", required=True, help="folder written by aam prepare")
    parser.add_argument("--metadata-column", required=True, help="target column")
    parser.add_argument("--train-samples", required=True, help="training sample list")
    parser.add_argument("--val-samples", required=True,
                        help="evaluated sample list (pass test_samples.txt to evaluate on test)")
    parser.add_argument("--test-samples",
                        help="alias that overrides --val-samples as the evaluated list")
    parser.add_argument("--output", required=True,
                        help="predictions.tsv; metrics.json, feature_importance.tsv and a "
                             "figure are written beside it")
    parser.add_argument("--task", choices=("regression", "classification"),
                        help="default: the task recorded by aam prepare")
    parser.add_argument("--n-estimators", type=int, default=500, help="trees (default 500)")
    parser.add_argument("--max-features", default="sqrt",
                        help="features per split: sqrt (default), log2, fraction or count")
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=-1, help="sklearn n_jobs (-1: all cores)")
    parser.add_argument("--top-features", type=int, default=100,
                        help="ASVs in feature_importance.tsv (default 100)")
    parser.add_argument("--taxonomy", help="QIIME 2 taxonomy TSV or .qza (Feature ID, Taxon); "
                                           "default: the taxonomy aam prepare stored, if any")
    parser.add_argument("--fold", type=int, help="fold number recorded in metrics.json")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = RFConfig(metadata_column=args.metadata_column, task=args.task,
                   n_estimators=args.n_estimators, max_features=_max_features(args.max_features),
                   random_seed=args.random_seed, n_jobs=args.n_jobs,
                   top_features=args.top_features)
    data = load_prepared(args.data_dir)
    stored = Path(args.data_dir) / TAXONOMY_FILE
    taxonomy_path = args.taxonomy or (stored if stored.is_file() else None)
    taxonomy = read_taxonomy(taxonomy_path) if taxonomy_path else None
    eval_list = args.test_samples or args.val_samples
    role = "--test-samples" if args.test_samples else "--val-samples"
    lists = read_sample_lists({"--train-samples": args.train_samples, role: eval_list},
                              data.sample_ids)
    result = fit_random_forest(data, lists["--train-samples"], lists[role], cfg, taxonomy)
    metrics = write_rf_outputs(result, args.output, fold=args.fold)
    shown = {k: metrics[k] for k in ("r2", "mae", "rmse", "accuracy", "auc") if k in metrics}
    log.info("random forest on %d samples of %s: %s", metrics["n"], eval_list, shown)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output", is_file=True))


if __name__ == "__main__":
    raise SystemExit(main())
