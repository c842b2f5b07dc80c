"""``aam explain``: which ASVs drive a trained model's predictions.

Integrated gradients over each ASV occurrence's abundance input (checked for completeness:
per sample the attributions sum to f(x) - f(baseline)), the sample encoder's attention-pooling
weights and, for cross-attention fusion, the weights per category level. Writes
``attributions.tsv`` (top ASVs with taxon and rank; first column ``feature-id`` for QIIME 2),
per-sample tables, ``explain.json`` and ``attributions.svg``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aam.cli.common import Outputs, add_common_flags, add_model_input_flags, run
from aam.cli.options import add_options, build_config, options_of
from aam.explain import ExplainConfig, ExplainPaths, run_explain

log = logging.getLogger("aam")
OPTIONS = options_of(ExplainConfig)
CONFIGS = ((ExplainConfig, OPTIONS),)  # the configs its flags build (the workflow checks them)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aam explain", description=__doc__)
    add_model_input_flags(parser, "model.pt written by aam train", "folder written by aam prepare")
    parser.add_argument("--output-dir", required=True, type=Path, help="folder to write into")
    parser.add_argument("--taxonomy", type=Path,
                        help="taxonomy TSV or FeatureData[Taxonomy] .qza (default: the "
                             "prepared folder's taxonomy.tsv when aam prepare stored one)")
    parser.add_argument("--rf-importances", type=Path,
                        help="feature_importance.tsv of aam rf-baseline: adds forest ranks, the "
                             "rank agreement and the AAM-vs-forest panel")
    parser.add_argument("--linear-importances", type=Path,
                        help="feature_importance.tsv of aam linear-baseline (|coefficient| per "
                             "ASV): adds linear ranks and the rank agreement with it")
    parser.add_argument("--truth", type=Path,
                        help="truth.json of aam simulate (table.biom beside it): report how "
                             "well attributions rank the signal ASVs (AUROC)")
    add_options(parser, OPTIONS, "settings")
    add_common_flags(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    cfg = build_config(ExplainConfig, args, OPTIONS)
    paths = ExplainPaths(model=args.model, data_dir=args.data_dir, output_dir=args.output_dir,
                         samples=args.samples, taxonomy=args.taxonomy,
                         rf_importances=args.rf_importances,
                         linear_importances=args.linear_importances, truth=args.truth)
    result = run_explain(cfg, paths)
    for name, words in (("rf", "the forest"), ("linear", "the linear model")):
        agreement = result.summary.get(f"rank_agreement_with_{name}")
        if agreement:
            log.info("rank agreement with %s: Spearman %.3f over the union of top-50, %d of the "
                     "top-20 shared", words, agreement["spearman_top50_union"],
                     agreement["shared_top20"])
    log.info("wrote %s", args.output_dir / "attributions.tsv")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_body, build_parser(), argv, Outputs("output_dir"))


if __name__ == "__main__":
    raise SystemExit(main())
