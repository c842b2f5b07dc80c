"""``aam prepare``: BIOM/qza table + metadata + tree (or distance matrix) -> prepared folder."""

from __future__ import annotations

import argparse
import logging

from aam.cli.common import Outputs, add_common_flags, run
from aam.data.beta import BETA_METRICS
from aam.data.prepare import PrepareConfig, prepare
from aam.validate import set_archive_limits

log = logging.getLogger("aam.prepare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam prepare",
        description="Key features by sequence, join metadata, filter samples, compute the "
                    "pretraining distances (--beta-metric); write table.biom, metadata.tsv, "
                    "distances.h5 and prepare.json.")
    parser.add_argument("--table", required=True, help="BIOM 2.1 table (HDF5/JSON) or .qza")
    parser.add_argument("--rep-seqs", help="FASTA or FeatureData[Sequence] .qza mapping hash "
                                           "feature IDs to sequences")
    parser.add_argument("--metadata", required=True, help="metadata TSV; first column sample ID")
    parser.add_argument("--metadata-column", required=True, help="target column")
    parser.add_argument("--task", choices=("regression", "classification"),
                        default="regression")
    phylo = parser.add_mutually_exclusive_group()
    phylo.add_argument("--tree", help="rooted Newick tree (.nwk) or Phylogeny .qza")
    phylo.add_argument("--distance-matrix",
                       help="precomputed distances: unifrac-binaries .h5 (order, matrix; "
                            "ssu --format hdf5), .h5 (ids, matrix), QIIME 2 DistanceMatrix "
                            ".qza, scikit-bio TSV or .npy (+ <stem>.ids.txt)")
    parser.add_argument("--taxonomy", help="taxonomy TSV or FeatureData[Taxonomy] .qza; stored "
                                           "as taxonomy.tsv (keyed by sequence) for "
                                           "rf-baseline, explain and the report")
    parser.add_argument("--beta-metric", choices=tuple(BETA_METRICS),
                        help="pretraining distances: " + "; ".join(
                            f"{m.name}: {m.summary}" + (" (needs --tree)" if m.needs_tree else "")
                            for m in BETA_METRICS.values())
                        + " (default: unweighted-unifrac with --tree, none without)")
    parser.add_argument("--categorical-columns", default="",
                        help="comma-separated metadata columns used as categories")
    parser.add_argument("--min-depth", type=int, default=0,
                        help="drop samples with fewer reads (default 0: only empty samples)")
    parser.add_argument("--rarefy-depth", type=int, default=None,
                        help="subsample every sample to N reads (seeded); shallower dropped")
    parser.add_argument("--max-ambiguous-fraction", type=float, default=0.01,
                        help="drop features whose non-ACGT fraction exceeds this")
    parser.add_argument("--allow-fractional-counts", action="store_true",
                        help="accept non-integer counts (e.g. relative abundances) with a "
                             "warning; by default they are an error")
    parser.add_argument("--max-archive-bytes", type=int, default=None,
                        help="largest .qza member read, in bytes once decompressed (default "
                             "4 GiB or $AAM_MAX_ARCHIVE_MEMBER_BYTES)")
    parser.add_argument("--max-archive-ratio", type=float, default=None,
                        help="largest expansion of a .qza member over 1 MiB (default 200 or "
                             "$AAM_MAX_ARCHIVE_RATIO): larger looks like a zip bomb")
    parser.add_argument("--seed", type=int, default=0, help="rarefaction seed")
    parser.add_argument("--output-dir", required=True, help="folder to write")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    set_archive_limits(args.max_archive_bytes, args.max_archive_ratio)
    cfg = PrepareConfig(
        table=args.table, rep_seqs=args.rep_seqs, metadata=args.metadata,
        target_column=args.metadata_column, task=args.task, tree=args.tree,
        distance_matrix=args.distance_matrix, beta_metric=args.beta_metric,
        categorical_columns=tuple(c.strip() for c in args.categorical_columns.split(",")
                                  if c.strip()),
        min_depth=args.min_depth, rarefy_depth=args.rarefy_depth, seed=args.seed,
        output_dir=args.output_dir, max_ambiguous_fraction=args.max_ambiguous_fraction,
        allow_fractional_counts=args.allow_fractional_counts, taxonomy=args.taxonomy)
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
