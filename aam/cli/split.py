"""``aam split``: write train/val/test sample lists (holdout or k-fold) from a metadata TSV."""

from __future__ import annotations

import argparse
import logging

from aam.cli.common import Outputs, add_common_flags, run
from aam.data.metadata import read_metadata
from aam.data.splits import SplitConfig, split_metadata, write_splits

log = logging.getLogger("aam.split")


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
    parser.add_argument("--group-by", default=None,
                        help="column whose values never straddle sides (e.g. subject)")
    parser.add_argument("--stratify-by", default=None,
                        help="class column whose proportions every side keeps")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--folds", type=int, default=None,
                      help="number of cross-validation folds (>= 2)")
    size.add_argument("--val-fraction", type=float, default=None,
                      help="holdout: fraction of samples (groups) in val (default 0.2)")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="fixed test set taken first, the same in every fold (default 0)")
    parser.add_argument("--inner-val-fraction", type=float, default=0.0,
                        help="with --test-fraction 0: validate on this fraction of each fold's "
                             "training groups, so test samples never choose an epoch (default "
                             "0: validate on the test side)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--output-dir", required=True, help="folder for the fold~{k} folders")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = SplitConfig(folds=args.folds, test_fraction=args.test_fraction,
                      val_fraction=0.2 if args.val_fraction is None else args.val_fraction,
                      group_by=args.group_by, stratify_by=args.stratify_by, seed=args.seed,
                      inner_val_fraction=args.inner_val_fraction)
    if args.inner_val_fraction and args.test_fraction:
        log.warning("--inner-val-fraction %g is ignored: with --test-fraction %g the test set is "
                    "fixed and validation comes from --val-fraction / --folds",
                    args.inner_val_fraction, args.test_fraction)
    metadata = read_metadata(args.metadata)
    folds = split_metadata(metadata, cfg, source=str(args.metadata))
    write_splits(folds, cfg, args.output_dir, metadata=args.metadata)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
