"""``aam rf-baseline``: random forest on the same prepared table and split as AAM.

Trains on every ``--train-samples`` list and predicts ``--test-samples`` (``--val-samples`` is
its old name). Features: relative abundances, plus ``--categorical-columns`` one-hot.
"""

from __future__ import annotations

import argparse
import logging

from aam.baselines.rf import RFConfig, fit_random_forest, write_rf_outputs
from aam.cli.baseline_args import add_baseline_flags, baseline_samples, log_metrics, taxonomy_of
from aam.cli.common import Outputs, add_common_flags, run
from aam.cli.options import build_config, options_of
from aam.data.prepared import load_prepared

log = logging.getLogger("aam")
OPTIONS = options_of(RFConfig)
CONFIGS = ((RFConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam rf-baseline", description=__doc__)
    add_baseline_flags(parser, OPTIONS)
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = build_config(RFConfig, args, OPTIONS)
    data = load_prepared(args.data_dir)
    train, test, source = baseline_samples(args, data.sample_ids)
    result = fit_random_forest(data, train, test, cfg, taxonomy_of(args))
    log_metrics("random forest", write_rf_outputs(result, args.output, fold=args.fold), source)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output", is_file=True))


if __name__ == "__main__":
    raise SystemExit(main())
