"""``aam predict``: predict the target of prepared samples with a model.pt from ``aam train``.

Writes ``predictions.tsv`` (original target scale) and, when the samples' target is known, a
``metrics.json`` beside it (``predict_metrics.json`` when writing into the training run's folder,
whose ``metrics.json`` belongs to ``aam train``). With ``--permutation-check`` it also writes
``permutation.json``: how much the metric and the predictions move when each categorical column
is shuffled across the samples (a model they do not move is "metadata inert").
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aam.cli.common import Outputs, add_common_flags, add_model_input_flags, run
from aam.cli.options import add_options, build_config, options_of
from aam.inference import PredictConfig, PredictPaths, metrics_path, run_predict
from aam.permutation import PermutationConfig, run_permutation_check

log = logging.getLogger("aam")


OPTIONS = options_of(PredictConfig)
PERMUTATION_OPTIONS = options_of(PermutationConfig, flag_prefix="permutation-")
# the configs its flags build (the workflow checks them)
CONFIGS = ((PredictConfig, OPTIONS), (PermutationConfig, PERMUTATION_OPTIONS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam predict", description=__doc__)
    add_model_input_flags(parser, "model.pt written by aam train (not a pretraining encoder.pt)",
                          "folder written by aam prepare (table, metadata)")
    parser.add_argument("--output", required=True, type=Path, help="predictions.tsv to write")
    parser.add_argument("--metadata", type=Path,
                        help="read categorical columns and the actual target from this TSV "
                             "instead of the prepared metadata.tsv")
    parser.add_argument("--metrics", type=Path,
                        help="metrics.json to write (default: beside --output)")
    parser.add_argument("--permutation-check", action="store_true",
                        help="also write permutation.json beside --output: shuffle each "
                             "categorical column across the samples and report the change of "
                             "the metric and of the predictions")
    add_options(parser, OPTIONS, "settings")
    add_options(parser, PERMUTATION_OPTIONS, "metadata permutation check")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = build_config(PredictConfig, args, OPTIONS)
    paths = PredictPaths(model=args.model, data_dir=args.data_dir, output=args.output,
                         samples=args.samples, metadata=args.metadata, metrics=args.metrics)
    check = (build_config(PermutationConfig, args, PERMUTATION_OPTIONS)
             if args.permutation_check else None)  # checked before predicting
    metrics = run_predict(cfg, paths)
    if check is not None:
        run_permutation_check(cfg, paths, check)
    if metrics is not None:
        shown = {k: metrics[k] for k in ("r2", "mae", "rmse", "accuracy", "auc")
                 if metrics.get(k) is not None}
        log.info("%s on %d samples: %s", metrics["task"], metrics["n"],
                 " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    return 0


def _default_metrics(args: argparse.Namespace) -> None:
    """Fix the metrics file name from the real output path (before it moves to staging)."""
    args.metrics = metrics_path(PredictPaths(model=args.model, data_dir=args.data_dir,
                                             output=args.output, metrics=args.metrics))


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output", is_file=True, also=("metrics",), defaults=_default_metrics))


if __name__ == "__main__":
    raise SystemExit(main())
