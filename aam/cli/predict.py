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
from aam.inference import PredictConfig, PredictPaths, metrics_path, run_predict
from aam.permutation import PermutationConfig, run_permutation_check

log = logging.getLogger("aam")


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
    parser.add_argument("--prediction-passes", type=int, default=1,
                        help="passes averaged per sample, each with a fresh random ASV draw; "
                             "needs --asv-sampling random (default 1)")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader worker processes (default 0)")
    parser.add_argument("--seed", type=int,
                        help="seed of the random ASV draws; pass p uses seed + p "
                             "(default: the model's training seed)")
    parser.add_argument("--no-asv-cache", dest="cache_asvs", action="store_false",
                        help="encode ASVs again in every batch and pass instead of reusing them")
    parser.add_argument("--permutation-check", action="store_true",
                        help="also write permutation.json beside --output: shuffle each "
                             "categorical column across the samples and report the change of "
                             "the metric and of the predictions")
    parser.add_argument("--permutation-repeats", type=int, default=3,
                        help="shuffles per column, averaged (default 3)")
    parser.add_argument("--permutation-seed", type=int, default=0,
                        help="seed of the shuffles (default 0)")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = PredictConfig(prediction_passes=args.prediction_passes, asv_sampling=args.asv_sampling,
                        batch_size=args.batch_size, num_workers=args.num_workers,
                        device=args.device, seed=args.seed, cache_asvs=args.cache_asvs)
    paths = PredictPaths(model=args.model, data_dir=args.data_dir, output=args.output,
                         samples=args.samples, metadata=args.metadata, metrics=args.metrics)
    check = (PermutationConfig(args.permutation_repeats, args.permutation_seed)
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
