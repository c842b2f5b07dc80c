"""``aam prepare``: BIOM/qza table + metadata + tree (or distance matrix) -> prepared folder."""

from __future__ import annotations

import argparse
import logging

from aam.cli.common import Outputs, add_common_flags, run
from aam.cli.options import add_options, build_config, options_of
from aam.data.prepare import PrepareConfig, prepare
from aam.validate import set_archive_limits

log = logging.getLogger("aam.prepare")
OPTIONS = options_of(PrepareConfig)
CONFIGS = ((PrepareConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam prepare",
        description="Key features by sequence, join metadata, filter samples, compute the "
                    "pretraining distances (--beta-metric); write table.biom, metadata.tsv, "
                    "distances.h5 and prepare.json.")
    add_options(parser, OPTIONS, "settings")
    parser.add_argument("--max-archive-bytes", type=int, default=None,
                        help="largest .qza member read, in bytes once decompressed (default "
                             "4 GiB or $AAM_MAX_ARCHIVE_MEMBER_BYTES)")
    parser.add_argument("--max-archive-ratio", type=float, default=None,
                        help="largest expansion of a .qza member over 1 MiB (default 200 or "
                             "$AAM_MAX_ARCHIVE_RATIO): larger looks like a zip bomb")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    set_archive_limits(args.max_archive_bytes, args.max_archive_ratio)
    cfg = build_config(PrepareConfig, args, OPTIONS)
    info = prepare(cfg)
    log.info("kept %d samples x %d ASVs (longest %d bp)", info["n_samples"], info["n_asvs"],
             info["max_bp"])
    for reason, entry in info["dropped_samples"].items():
        log.info("dropped %d samples: %s", entry["count"], reason)
    for reason, entry in info["dropped_asvs"].items():
        log.info("dropped %d ASVs (%s reads): %s", entry["count"], entry["reads"], reason)
    if info["distance_seconds"] is not None:
        log.info("%s distances took %.1f s", info["beta_metric"], info["distance_seconds"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``aam prepare``; returns the exit code (2 on input errors)."""
    return run(_body, build_parser(), argv,
               Outputs("output_dir", writes=("table.biom", "metadata.tsv", "distances.h5",
                                             "taxonomy.tsv", "prepare.json")))


if __name__ == "__main__":
    raise SystemExit(main())
