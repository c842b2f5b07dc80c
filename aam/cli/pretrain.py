"""``aam pretrain``: self-supervised pretraining of the encoder on sample distances + masked
nucleotides."""

from __future__ import annotations

import argparse

from aam.cli.common import (Outputs, add_common_flags, continue_preempted, run,
                             warn_unused_val_fraction)
from aam.cli.options import (PRETRAIN_OPTIONS, add_run_flags, add_training_flags,
                             build_training_config)
from aam.config import PretrainConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam pretrain",
        description="Pretrain the nucleotide -> ASV -> sample encoder: predicted distances "
                    "between sample embeddings are fitted to the prepared distances "
                    "(distances.h5: UniFrac, Bray-Curtis, ...) for every pair of samples in a "
                    "batch, plus a masked-nucleotide loss. Writes "
                    "DIR/{encoder.pt, metrics.json, config.resolved.yaml, train_samples.txt, "
                    "val_samples.txt, checkpoints/{best,last}.pt, tensorboard/}. "
                    "The batch size is per process and must be even and >= 2.")
    add_run_flags(parser, "PretrainConfig",
                  "folder written by aam prepare (needs distances.h5: prepare with --tree, "
                  "--distance-matrix or a tree-free --beta-metric)")
    add_training_flags(parser, PRETRAIN_OPTIONS)
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    from aam.training.pretrain import PretrainPaths, run_pretrain

    continue_preempted(args)
    warn_unused_val_fraction(args)
    cfg = build_training_config(PretrainConfig, args, PRETRAIN_OPTIONS, args.config)
    paths = PretrainPaths(args.data_dir, args.output_dir, args.train_samples, args.val_samples,
                          args.resume_from)
    run_pretrain(cfg, paths)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir", durable=("checkpoints",),
                       writes=("encoder.pt", "metrics.json", "config.resolved.yaml")))


if __name__ == "__main__":
    raise SystemExit(main())
