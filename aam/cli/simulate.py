"""``aam simulate``: write the embedded simulated dataset (table, metadata, tree, truth,
taxonomy)."""

from __future__ import annotations

import argparse

from aam.cli.common import Outputs, add_common_flags, run
from aam.cli.options import add_options, build_config, options_of
from aam.data.simulate import SimulationConfig, simulate, write_simulation


OPTIONS = options_of(SimulationConfig)
CONFIGS = ((SimulationConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aam simulate",
        description="Write DIR/{table.biom, metadata.tsv, tree.nwk, truth.json, taxonomy.tsv}: a "
                    "simulated 16S dataset whose numeric 'target' depends on clade abundances, "
                    "the 'category' column and their interaction; 'subject' groups samples. "
                    "taxonomy.tsv names each ASV's signal clade (p__signal; f__clade-<c>, as in "
                    "truth.json) or background subtree (aam prepare --taxonomy reads it).")
    parser.add_argument("--output-dir", required=True, help="folder to write the files into")
    add_options(parser, OPTIONS, "settings")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    write_simulation(simulate(build_config(SimulationConfig, args, OPTIONS)), args.output_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
