"""``aam linear-baseline``: ridge regression (L2 logistic regression for classification) on CLR
abundances, on the same prepared table and split as AAM.

Trains on every ``--train-samples`` list and predicts ``--test-samples``; the L2 penalty is
chosen by cross-validation over the training samples, grouped by ``--group-by`` (plain K-fold
without it). Features: CLR of counts + ``--pseudocount``, plus ``--categorical-columns`` one-hot.
Writes predictions.tsv, metrics.json (with the chosen penalty) and feature_importance.tsv
(coefficients).
"""

from __future__ import annotations

import argparse
import logging

from aam.baselines.features import DEFAULT_PSEUDOCOUNT, parse_columns
from aam.baselines.linear import LinearConfig, fit_linear_baseline
from aam.baselines.rf import write_rf_outputs
from aam.cli.baseline_args import add_baseline_flags, baseline_samples, log_metrics, taxonomy_of
from aam.cli.common import Outputs, add_common_flags, run
from aam.data.prepared import load_prepared

log = logging.getLogger("aam")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam linear-baseline", description=__doc__)
    add_baseline_flags(parser)
    parser.add_argument("--group-by", default="",
                        help="subject column: the penalty's CV folds keep a subject's samples "
                             "together (default: plain K-fold over samples)")
    parser.add_argument("--cv-folds", type=int, default=5,
                        help="CV folds choosing the penalty (default 5; fewer with fewer "
                             "subjects)")
    parser.add_argument("--pseudocount", type=float, default=DEFAULT_PSEUDOCOUNT,
                        help=f"added to every count before the CLR (default "
                             f"{DEFAULT_PSEUDOCOUNT})")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = LinearConfig(metadata_column=args.metadata_column, task=args.task,
                       group_by=args.group_by, cv_folds=args.cv_folds,
                       pseudocount=args.pseudocount,
                       categorical_columns=parse_columns(args.categorical_columns),
                       random_seed=args.random_seed, top_features=args.top_features)
    data = load_prepared(args.data_dir)
    train, test, source = baseline_samples(args, data.sample_ids)
    result = fit_linear_baseline(data, train, test, cfg, taxonomy_of(args))
    metrics = write_rf_outputs(result, args.output, fold=args.fold, model="linear",
                               label="linear (CLR)")
    log_metrics("linear model", metrics, source)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output", is_file=True))


if __name__ == "__main__":
    raise SystemExit(main())
