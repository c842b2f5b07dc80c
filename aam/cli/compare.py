"""``aam compare``: compare the models of a results tree (every run, or a listed subset) with the
random-forest baseline and the linear baseline.

Writes comparison.tsv, runs.tsv, summary.md, report_section.rst and figures (SVG + PNG). Per
model: a verdict against each baseline, how its epoch was selected, and the metadata permutation
check of its runs (``permutation.json`` from ``aam predict --permutation-check``); a fusion whose
metadata moves nothing is marked metadata inert and not ranked.
"""

from __future__ import annotations

import argparse
import logging

from aam.cli.common import Outputs, add_common_flags, run
from aam.cli.options import add_options, build_config, options_of
from aam.reports.summary import CompareConfig, write_report

log = logging.getLogger("aam")


OPTIONS = options_of(CompareConfig)
CONFIGS = ((CompareConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam compare", description=__doc__)
    add_options(parser, OPTIONS, "settings")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = build_config(CompareConfig, args, OPTIONS)
    table = write_report(cfg)
    log.info("compared %d models; best: %s; report in %s", len(table), table["model"].iloc[0],
             args.output_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
