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

from aam.baselines.linear import LinearConfig, fit_linear_baseline
from aam.baselines.rf import write_rf_outputs
from aam.cli.baseline_args import add_baseline_flags, baseline_samples, log_metrics, taxonomy_of
from aam.cli.common import Outputs, add_common_flags, run
from aam.cli.options import build_config, options_of
from aam.data.prepared import load_prepared

log = logging.getLogger("aam")
OPTIONS = options_of(LinearConfig)
CONFIGS = ((LinearConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam linear-baseline", description=__doc__)
    add_baseline_flags(parser, OPTIONS)
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = build_config(LinearConfig, args, OPTIONS)
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
