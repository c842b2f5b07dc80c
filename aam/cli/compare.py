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

from aam.baselines.features import parse_columns
from aam.cli.common import Outputs, add_common_flags, run
from aam.reports.summary import CompareConfig, write_report

log = logging.getLogger("aam")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam compare", description=__doc__)
    parser.add_argument("--results-dir", required=True,
                        help="tree with finetune/<ablation>/fold~K/seed~S/ and rf/fold~K/seed~S/ "
                             "folders holding predictions.tsv; a run's path below it names "
                             "its model, fold and seed")
    parser.add_argument("--run-list", metavar="FILE",
                        help="read only the runs named in FILE (one predictions.tsv or run folder "
                             "a line, inside --results-dir) instead of every predictions.tsv "
                             "under --results-dir")
    parser.add_argument("--labels", metavar="FILE",
                        help="TSV with columns model and label: readable model names for the "
                             "summary, tables and figures (default: derived from each ablation's "
                             "settings, e.g. 'cross-attention, frozen')")
    parser.add_argument("--output-dir", required=True, help="where the report files go")
    parser.add_argument("--baseline", default="rf",
                        help="path segment of the baseline runs (default rf)")
    parser.add_argument("--other-baselines", default="linear",
                        help="comma-separated path segments of further baselines compared with "
                             "every model (default linear; '' for none); skipped when they have "
                             "no runs")
    parser.add_argument("--n-bootstrap", type=int, default=2000,
                        help="paired bootstrap replicates for the 95%% CI (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--no-png", action="store_true", help="write SVG figures only")
    parser.add_argument("--no-figures", action="store_true", help="write tables and text only")
    parser.add_argument("--figures-dir", default=None,
                        help="folder for the figures (default: --output-dir); which figures "
                             "exist depends on the task and on the metrics that have values")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = CompareConfig(results_dir=args.results_dir, output_dir=args.output_dir,
                        baseline=args.baseline, n_bootstrap=args.n_bootstrap, seed=args.seed,
                        other_baselines=parse_columns(args.other_baselines),
                        png=not args.no_png, figures=not args.no_figures,
                        run_list=args.run_list, labels=args.labels,
                        figures_dir=args.figures_dir)
    table = write_report(cfg)
    log.info("compared %d models; best: %s; report in %s", len(table), table["model"].iloc[0],
             args.output_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv,
               Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
