"""``aam rf-baseline``: random forest on the same prepared table and split as AAM.

Trains on every ``--train-samples`` list and predicts ``--test-samples`` (``--val-samples`` is
its old name). Features: relative abundances, plus ``--categorical-columns`` one-hot.
"""

from __future__ import annotations

import argparse
import logging

from aam.baselines.features import parse_columns
from aam.baselines.rf import RFConfig, fit_random_forest, write_rf_outputs
from aam.cli.baseline_args import add_baseline_flags, baseline_samples, log_metrics, taxonomy_of
from aam.cli.common import Outputs, add_common_flags, run
from aam.data.prepared import load_prepared
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
    add_baseline_flags(parser)
    parser.add_argument("--n-estimators", type=int, default=500, help="trees (default 500)")
    parser.add_argument("--max-features", default="sqrt",
                        help="features per split: sqrt (default), log2, fraction or count")
    parser.add_argument("--n-jobs", type=int, default=-1, help="sklearn n_jobs (-1: all cores)")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = RFConfig(metadata_column=args.metadata_column, task=args.task,
                   n_estimators=args.n_estimators, max_features=_max_features(args.max_features),
                   random_seed=args.random_seed, n_jobs=args.n_jobs,
                   top_features=args.top_features,
                   categorical_columns=parse_columns(args.categorical_columns))
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
