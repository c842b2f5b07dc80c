"""Real-data benchmark: ``python benchmarks/science.py [--preset cpu|gpu|smoke]``.

AAM against the random forest on sleep-apnea ``age`` (regression), sleep-apnea
``exposure_type`` and ibd-2538 ``ibd`` (classification): grouped K-fold by subject, several
seeds, the forest on exactly the same folds, paired bootstrap intervals resampling subjects.
Writes ``<results-dir>/science-<preset>.{md,tsv}`` and the out-of-fold predictions
(``science-<preset>-predictions.tsv.gz``). See benchmarks/README.md.
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

from aam_science.report import comparison, machine, markdown  # noqa: E402
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
    p.add_argument("--count-features", help="log1p | clr (model.count_features)")
    p.add_argument("--asv-norm", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--abundance-head", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--abundance-head-init", help="fit | zero (finetune.abundance_head_init)")
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
        "count_features", "asv_norm", "abundance_head", "abundance_head_init",
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
    tables, predictions, encoders, seconds = [], [], {}, {}
    for study in studies:  # the files are rewritten after each study: a partial run shows
        result = run_study(study, dirs[study.name], work, settings, encoders)
        tables.append(comparison(result, settings.n_bootstrap))
        predictions.append(long_table(result))
        seconds[study.name] = round(result.seconds)
        log.info("%s finished in %.0f s", study.name, result.seconds)
        text = _write(args, settings, tables, predictions, seconds, time.perf_counter() - start)
    print(text)  # noqa: T201 (a script's report goes to stdout)
    return 0


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
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("science-" + "-".join(filter(None, (
        args.preset, "dev" if settings.dev_fold is not None else "", args.tag))))
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
