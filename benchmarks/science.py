"""Real-data benchmark: ``python benchmarks/science.py [--preset cpu|gpu|smoke]``.

AAM against the random forest on sleep-apnea ``age`` (regression), sleep-apnea
``exposure_type`` and ibd-2538 ``ibd`` (classification): grouped K-fold by subject, several
seeds, the forest on exactly the same folds, paired bootstrap intervals resampling subjects.
Writes ``<results-dir>/science-<preset>.{md,tsv}`` and the out-of-fold predictions
(``science-<preset>-predictions.tsv.gz``). With ``--ablations``, a separate run at one seed:
the full model against head only, a random encoder, ASV identity and a corpus-pretrained
encoder (``science-ablations-<preset>.*``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from aam.cli.common import add_common_flags, run  # noqa: E402
from aam.errors import InputError  # noqa: E402

from aam_science.ablations import ABLATIONS, BASE, DEFAULT_ROWS, run_ablations  # noqa: E402
from aam_science.report import (ablation_comparison, ablation_markdown, comparison,  # noqa: E402
                                machine, markdown)
from aam_science.runner import long_table, prepare_study, run_study  # noqa: E402
from aam_science.settings import PRESETS, STUDIES, preset  # noqa: E402

log = logging.getLogger("aam_science")


def _tuple(kind):
    return lambda text: tuple(kind(v) for v in text.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="science.py", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu",
                   help="sizes: cpu (2 cores, < 60 min), gpu (one GPU), smoke (seconds)")
    p.add_argument("--studies", type=_tuple(str), help=f"subset of {','.join(STUDIES)}")
    p.add_argument("--variants", type=_tuple(str),
                   help="rows besides rf: aam, aam-ensemble, aam-scratch, hybrid-rf, linear")
    p.add_argument("--seeds", type=_tuple(int), help="e.g. 0,1,2")
    p.add_argument("--folds", type=int)
    p.add_argument("--device", help="cpu | cuda")
    p.add_argument("--threads", type=int, help="torch and forest threads")
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"),
                   help="folder holding sleep-apnea/ and ibd-2538/ (default ../shared/data)")
    p.add_argument("--prepared-root", help="read <root>/<study>/ prepared folders instead of "
                                           "preparing (no scikit-bio needed)")
    p.add_argument("--prepare-only", action="store_true",
                   help="prepare every study into --work-dir/prepared and stop")
    p.add_argument("--work-dir", default=str(HERE / "out" / "science"),
                   help="prepared data, checkpoints and logs (git-ignored)")
    p.add_argument("--results-dir", default=str(HERE / "results"))
    for name in ("embedding-dim", "attention-layers", "token-limit", "pretrain-epochs",
                 "finetune-epochs", "finetune-patience", "batch-size"):
        p.add_argument(f"--{name}", type=int)
    for name in ("finetune-lr", "pretrain-lr", "weight-decay", "dropout"):
        p.add_argument(f"--{name}", type=float)
    p.add_argument("--asv-sampling")
    p.add_argument("--abundance-head-refit", action=argparse.BooleanOptionalAction, default=None,
                   help="refit the head on inner-train + inner-validation when the fitted "
                        "start is the best epoch (finetune.abundance_head_refit)")
    p.add_argument("--selection-se", type=float,
                   help="a fine-tuned epoch must beat the fitted start by this many standard "
                        "errors of the per-subject validation-loss difference "
                        "(finetune.selection_se; 0: lowest validation loss)")
    p.add_argument("--target-transform")
    p.add_argument("--dev-fold", type=int,
                   help="recipe development: benchmark only the training subjects of this "
                        "outer fold (its test subjects are never read); writes *-dev.* files")
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. an ablation)")
    p.add_argument("--ablations", action="store_true",
                   help="the ablation run instead: at the first seed, the rows of "
                        "--ablation-rows against the full model (science-ablations-<preset>.*)")
    p.add_argument("--ablation-rows", type=_tuple(str), default=DEFAULT_ROWS,
                   help=f"rows of --ablations, from {','.join(ABLATIONS)} (default "
                        f"{','.join(DEFAULT_ROWS)})")
    p.add_argument("--corpus", help="unlabelled BIOM table pretrained on beside each study's "
                                    "training samples (default <data-root>/cf-sputum-corpus/"
                                    "table.biom; the pretrained-corpus row)")
    p.add_argument("--pretrain-corpus", action="store_true",
                   help="pretrain the benchmark's encoders on each fold's training samples "
                        "plus --corpus (sequences cut to the study's length, Bray-Curtis)")
    p.add_argument("--freeze-base", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--inner-rotation", action=argparse.BooleanOptionalAction, default=None,
                   help="seed r of an ensemble validates on inner grouped fold r of the "
                        "training subjects (default; --no-inner-rotation: one inner holdout "
                        "for every seed)")
    add_common_flags(p)
    return p


def _settings(args):
    overrides = {k: getattr(args, k) for k in (
        "studies", "variants", "seeds", "folds", "device", "threads", "embedding_dim",
        "attention_layers", "token_limit", "pretrain_epochs", "finetune_epochs",
        "finetune_patience", "batch_size", "finetune_lr", "pretrain_lr", "weight_decay",
        "dropout", "asv_sampling", "freeze_base", "target_transform", "dev_fold",
        "abundance_head_refit", "selection_se", "inner_rotation")}
    return preset(args.preset, **overrides)


def _body(args) -> int:
    settings = _settings(args)
    torch.set_num_threads(settings.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(work / f"science-{args.preset}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for console in root.handlers:  # per-epoch lines go to the log file only
        console.addFilter(lambda r: r.name == "aam_science" or r.levelno >= logging.WARNING)
    root.addHandler(handler)
    prepared_root = Path(args.prepared_root) if args.prepared_root else None
    start = time.perf_counter()
    studies = [STUDIES[name] for name in settings.studies]
    dirs = {s.name: prepare_study(s, Path(args.data_root), work / "prepared", prepared_root)
            for s in studies}
    if args.prepare_only:
        log.info("prepared %s under %s", ", ".join(dirs), work / "prepared")
        return 0
    corpus = _corpus(args)
    if args.ablations:
        return _ablations(args, settings, studies, dirs, work, corpus, start)
    tables, predictions, encoders, seconds = [], [], {}, {}
    for study in studies:  # the files are rewritten after each study: a partial run shows
        result = run_study(study, dirs[study.name], work, settings, encoders,
                           corpus if args.pretrain_corpus else None)
        tables.append(comparison(result, settings.n_bootstrap))
        predictions.append(long_table(result))
        seconds[study.name] = round(result.seconds)
        log.info("%s finished in %.0f s", study.name, result.seconds)
        text = _write(args, settings, tables, predictions, seconds, time.perf_counter() - start)
    print(text)  # noqa: T201 (a script's report goes to stdout)
    return 0


def _corpus(args) -> Path | None:
    """The corpus table when a run uses it (--pretrain-corpus, or the pretrained-corpus row)."""
    if not (args.pretrain_corpus or (args.ablations and "pretrained-corpus" in
                                     args.ablation_rows)):
        return None
    path = Path(args.corpus or Path(args.data_root) / "cf-sputum-corpus" / "table.biom")
    if not path.is_file():
        raise FileNotFoundError(f"corpus table not found: {path} (give --corpus TABLE, or "
                                "leave the pretrained-corpus row out of --ablation-rows)")
    return path


def _ablations(args, settings, studies, dirs, work: Path, corpus, start: float) -> int:
    """The ablation run: every row on every study at the first seed; files rewritten after
    each study."""
    unknown = [r for r in args.ablation_rows if r not in ABLATIONS]
    if unknown:
        raise InputError(f"unknown --ablation-rows {', '.join(unknown)}; choose from "
                         f"{', '.join(ABLATIONS)}.")
    rows = (BASE, *[r for r in args.ablation_rows if r != BASE])
    tables, predictions, seconds, row_seconds, encoders = [], [], {}, dict.fromkeys(rows, 0.0), {}
    for study in studies:
        done = run_ablations(study, dirs[study.name], work, settings, encoders, rows, corpus)
        tables.append(ablation_comparison(done.result, BASE, settings.n_bootstrap))
        predictions.append(long_table(done.result).rename(columns={"variant": "row"}))
        seconds[study.name] = round(done.result.seconds)
        for row, value in done.seconds.items():
            row_seconds[row] += value
        row_seconds["pretraining"] = row_seconds.get("pretraining", 0.0) + done.pretrain_seconds
        log.info("%s finished in %.0f s", study.name, done.result.seconds)
        text = _write_ablations(args, settings, rows, tables, predictions, seconds, row_seconds,
                                time.perf_counter() - start)
    print(text)  # noqa: T201 (a script's report goes to stdout)
    return 0


def _write_ablations(args, settings, rows, tables, predictions, seconds, row_seconds,
                     wall: float) -> str:
    """Write science-ablations-<preset>.{md,tsv} and its predictions; returns the text."""
    header = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "wall time": f"{wall / 60:.1f} min (per study, s: {seconds}; per row, fine-tuning and "
                     f"prediction, s: { {k: round(v) for k, v in row_seconds.items()} }; a row "
                     "reused from an earlier run in the same work folder counts 0)",
        "preset": f"{args.preset}: {settings.note}",
        "seed": f"{settings.seeds[0]} (one run per row)",
        "settings": ", ".join(f"{k}={v}" for k, v in asdict(settings).items()
                              if k not in ("note", "variants", "seeds")),
        "selection": "the benchmark's grouped K-fold by subject (split seed 0) and its inner "
                     "split of seed 0 (inner-train / inner-validation by subject); every row "
                     "trains on inner-train, chooses on inner-validation and predicts the "
                     "fold's test subjects once. Pretrained rows use the benchmark's encoder "
                     "of the fold (self-supervised on inner-train, best epoch on "
                     "inner-validation).",
        "corpus": "pretrained-corpus pretrains on inner-train plus the cf-sputum corpus "
                  "(CF sputum, another body site than the studies' stool; no labels), its "
                  "150-nt sequences cut to the study's 100 nt (counts of sequences identical "
                  "after the cut summed; corpus samples under 1,000 reads dropped), with "
                  "Bray-Curtis distances over the joint table (for ibd-2538 this also "
                  "replaces the study's unweighted UniFrac); best epoch on inner-validation.",
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("science-ablations-" + "-".join(filter(None, (args.preset, args.tag))))
    table = pd.concat(tables, ignore_index=True)
    text = ablation_markdown(table, header, {r: ABLATIONS[r].change for r in rows})
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    table.to_csv(stem.with_suffix(".tsv"), sep="\t", index=False, float_format="%.4f")
    pd.concat(predictions).to_csv(f"{stem}-predictions.tsv.gz", sep="\t", index=False,
                                  float_format="%.5g")
    return text


def _write(args, settings, tables, predictions, seconds, wall: float) -> str:
    """Write the markdown, TSV and predictions of the studies done so far; returns the text."""
    table = pd.concat(tables, ignore_index=True)
    header = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "wall time": f"{wall / 60:.1f} min (per study, s: {seconds})",
        "preset": f"{args.preset}: {settings.note}",
        "settings": ", ".join(f"{k}={v}" for k, v in asdict(settings).items()
                              if k != "note"),
        "selection": "grouped K-fold by subject (split seed 0); in each fold the training "
                     f"subjects are split again by subject ({settings.inner_val_fraction:.0%} "
                     "to inner validation, stratified by the class for classification"
                     + ("; seed r validates on the r-th such inner fold, so the seeds of an "
                        "ensemble validate on different subjects" if settings.inner_rotation
                        else "; the same for every seed") +
                     "); pretraining (self-supervised, one per fold on seed 0's inner split; "
                     "targets with the same inner split share it) and fine-tuning train on "
                     "inner-train and choose their epoch / stop early on inner validation"
                     + (f" (a fine-tuned epoch must beat the fitted start by "
                        f"{settings.selection_se:g} standard error of the per-subject "
                        "validation-loss difference)" if settings.selection_se else "")
                     + ("; when the fitted start (epoch 0) wins, the abundance head is fitted "
                        "again on inner-train + inner-validation" if settings.abundance_head_refit
                        else "") +
                     "; test subjects are predicted once. The forests and the linear reference "
                     "fit on all training samples of the fold.",
    }
    if args.pretrain_corpus:
        header["pretraining corpus"] = (
            f"{args.corpus or 'cf-sputum-corpus'}: each fold's encoder pretrains on inner-train "
            "plus the corpus (sequences cut to the study's longest ASV, counts of sequences "
            "identical after the cut summed, corpus samples under 1,000 reads dropped), "
            "Bray-Curtis distances over the joint table; best epoch on inner validation")
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("science-" + "-".join(filter(None, (
        args.preset, "dev" if settings.dev_fold is not None else "",
        "corpus" if args.pretrain_corpus else "", args.tag))))
    text = markdown(table, header)
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    table.to_csv(stem.with_suffix(".tsv"), sep="\t", index=False, float_format="%.4f")
    pd.concat(predictions).to_csv(f"{stem}-predictions.tsv.gz", sep="\t", index=False,
                                  float_format="%.5g")
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on input errors)."""
    return run(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
