"""``aam simulate``: write the embedded simulated dataset (table, metadata, tree, truth,
taxonomy)."""

from __future__ import annotations

import argparse

from aam.cli.common import Outputs, add_common_flags, run
from aam.data.simulate import SimulationConfig, simulate, write_simulation


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(
        prog="aam simulate",
        description="Write DIR/{table.biom, metadata.tsv, tree.nwk, truth.json, taxonomy.tsv}: a "
                    "simulated 16S dataset whose numeric 'target' depends on clade abundances, "
                    "the 'category' column and their interaction; 'subject' groups samples. "
                    "taxonomy.tsv names each ASV's signal clade (p__signal; f__clade-<c>, as in "
                    "truth.json) or background subtree (aam prepare --taxonomy reads it).")
    parser.add_argument("--output-dir", required=True, help="folder to write the files into")
    parser.add_argument("--samples", type=int, default=defaults.n_samples,
                        help=f"number of samples (default {defaults.n_samples})")
    parser.add_argument("--asvs", type=int, default=defaults.n_asvs,
                        help=f"number of ASVs, i.e. tree tips (default {defaults.n_asvs})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="random seed; the same seed gives the same files (default 0)")
    parser.add_argument("--subjects", type=int, default=0,
                        help="number of subjects (default 0 = one per 4 samples)")
    parser.add_argument("--categories", type=int, default=defaults.n_categories,
                        help=f"levels of the 'category' column (default {defaults.n_categories})")
    parser.add_argument("--seq-length", type=int, default=defaults.seq_length,
                        help=f"nucleotides per ASV, 100-150 (default {defaults.seq_length})")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = SimulationConfig(n_samples=args.samples, n_asvs=args.asvs, seed=args.seed,
                           n_subjects=args.subjects, n_categories=args.categories,
                           seq_length=args.seq_length)
    write_simulation(simulate(cfg), args.output_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
