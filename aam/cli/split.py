"""``aam split``: write train/val/test sample lists (holdout or k-fold) from a metadata TSV."""

from __future__ import annotations

import argparse
import logging

from aam.cli.common import Outputs, add_common_flags, run
from aam.cli.options import add_options, build_config, options_of
from aam.data.metadata import read_metadata
from aam.data.splits import SplitConfig, split_metadata, write_splits
from aam.errors import InputError

log = logging.getLogger("aam.split")
OPTIONS = options_of(SplitConfig)
CONFIGS = ((SplitConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam split",
        description="Write DIR/fold~{k}/{train,val,test}_samples.txt and DIR/splits.json. "
                    "Holdout by default (one fold); --folds K gives K-fold cross-validation. "
                    "With --test-fraction 0 each fold's test list equals its val list, unless "
                    "--inner-val-fraction takes the val list from the fold's training groups.")
    parser.add_argument("--metadata", required=True,
                        help="metadata TSV whose first column is the sample ID (e.g. the "
                             "metadata.tsv that aam prepare wrote)")
    add_options(parser, OPTIONS, "settings")
    parser.add_argument("--output-dir", required=True, help="folder for the fold~{k} folders")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    if args.folds is not None and args.val_fraction is not None:
        raise InputError("give --folds (K-fold) or --val-fraction (one holdout split), not "
                         "both.")
    cfg = build_config(SplitConfig, args, OPTIONS)
    if cfg.inner_val_fraction and cfg.test_fraction:
        log.warning("--inner-val-fraction %g is ignored: with --test-fraction %g the test set is "
                    "fixed and validation comes from --val-fraction / --folds",
                    cfg.inner_val_fraction, cfg.test_fraction)
    metadata = read_metadata(args.metadata)
    folds = split_metadata(metadata, cfg, source=str(args.metadata))
    write_splits(folds, cfg, args.output_dir, metadata=args.metadata)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
