"""``aam train``: fine-tune on a sample target with categorical fusion."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aam.cli.categorical_help import help_text
from aam.cli.common import (Outputs, add_common_flags, continue_preempted, run,
                             warn_unused_val_fraction)
from aam.cli.options import (FINETUNE_OPTIONS, add_run_flags, add_training_flags,
                             build_training_config)
from aam.config import FinetuneConfig, load_yaml

log = logging.getLogger("aam.train")


class _HelpAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(help_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam train",
        description="Fine-tune the encoder + target head on a metadata column, with categorical "
                    "fusion. Writes DIR/{model.pt, val_predictions.tsv, metrics.json, "
                    "train_samples.txt, val_samples.txt, config.resolved.yaml, "
                    "checkpoints/{best,last}.pt, tensorboard/}.")
    parser.add_argument("--categorical-help", nargs=0, action=_HelpAction,
                        help="print how to choose a categorical fusion and exit")
    add_run_flags(parser, "FinetuneConfig", "folder written by aam prepare")
    parser.add_argument("--pretrained-encoder", type=Path,
                        help="encoder.pt of aam pretrain; its model sizes override the flags")
    parser.add_argument("--fold", help="fold label recorded in metrics.json")
    add_training_flags(parser, FINETUNE_OPTIONS)
    add_common_flags(parser)
    return parser


def _from_prepared(args: argparse.Namespace) -> dict:
    """Default target column, task and categorical columns from prepare.json (not on resume;
    a --config YAML and flags override them)."""
    from aam.data.prepared import read_prepare_info

    path = args.data_dir / "prepare.json"
    if args.resume_from or not path.is_file():
        return {}
    info = read_prepare_info(path)
    inferred: dict = {}
    if info.get("target_column"):
        inferred["target_column"] = info["target_column"]
    target = args.metadata_column or (load_yaml(FinetuneConfig, args.config).target_column
                                      if args.config else None)
    if info.get("task") and target in (None, "", info.get("target_column")):
        inferred["task"] = info["task"]
    if info.get("categorical_columns"):
        inferred["data"] = {"categorical_columns": list(info["categorical_columns"])}
    return inferred


def _warn_ignored(args: argparse.Namespace, cfg: FinetuneConfig) -> None:
    if args.categorical_fusion is not None and not cfg.data.categorical_columns:
        log.warning("--categorical-fusion %s is ignored: no --categorical-columns",
                    args.categorical_fusion)
    if args.count_penalty is not None and not cfg.count_prediction:
        log.warning("--count-penalty is ignored with --no-count-prediction")
    warn_unused_val_fraction(args)
    regression = cfg.task == "regression"
    ignored = [
        (args.normalize_by is not None and cfg.data.target_transform != "zscore-category",
         "--normalize-by is ignored: it applies to --target-transform zscore-category only"),
        (args.target_transform is not None and not regression,
         f"--target-transform {args.target_transform} is ignored: classes are never "
         "transformed"),
        (args.categorical_lr is not None and not cfg.data.categorical_columns,
         "--categorical-lr is ignored: no --categorical-columns"),
        (args.class_weights is not None and regression,
         "--class-weights is ignored: it applies to classification only"),
        (args.loss is not None and not regression,
         f"--loss {args.loss} is ignored: classification always uses cross-entropy"),
        (args.selection_se is not None and not cfg.builds_attention_path,
         "--selection-se is ignored: the margin compares fine-tuned epochs with the fitted "
         "start, and a model without the attention path runs none"),
    ]
    for given, message in ignored:
        if given:
            log.warning(message)


def _body(args: argparse.Namespace) -> int:
    from aam.training.finetune import FinetunePaths, run_finetune

    continue_preempted(args)
    cfg = build_training_config(FinetuneConfig, args, FINETUNE_OPTIONS, args.config,
                                inferred=_from_prepared(args))
    _warn_ignored(args, cfg)
    paths = FinetunePaths(args.data_dir, args.output_dir, args.train_samples, args.val_samples,
                          args.pretrained_encoder, args.resume_from, args.fold)
    run_finetune(cfg, paths)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir", durable=("checkpoints",),
                       writes=("model.pt", "metrics.json", "config.resolved.yaml")))


if __name__ == "__main__":
    raise SystemExit(main())
