"""The recipe's choices, re-made on development data that is never a benchmark test fold.

The simulator (`aam simulate`, a seed no benchmark or test uses) is split into K folds grouped
by subject; each fold's epochs are chosen on an inner validation split of its own training
subjects, and its held-out subjects are predicted once. The recipe (`aam train`'s defaults,
which the workflow and the real-data benchmark share) runs beside one variant per choice, each
changing that one setting. Per variant: R² of the pooled out-of-fold predictions and its
difference to the recipe with a paired subject-bootstrap 95% interval; a choice is changed only
when an alternative is better with the whole interval above 0.

    python benchmarks/recipe.py --workdir /tmp/aam-recipe            # prints a markdown table

What attention fusion and the metadata add is ``benchmarks/fusions.py`` (same simulator and folds).

No pretraining (every run starts from a new encoder) keeps it to about 15 minutes on 2 cores;
the choices it re-makes are those of fine-tuning and of the data fed to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIM = ["--samples", "400", "--asvs", "200", "--seed", "7"]
SIZES = ["--embedding-dim", "32", "--attention-heads", "4", "--attention-layers", "1",
         "--batch-size", "16", "--epochs", "10", "--device", "cpu"]
#: variant -> (the setting it changes, aam train flags); "recipe" is aam train's defaults.
VARIANTS = {
    "recipe": ("aam train's defaults", []),
    "sampling-first": ("asv_sampling first (table order)", ["--asv-sampling", "first"]),
    "transform-none": ("target_transform none", ["--target-transform", "none"]),
    "no-margin": ("selection_se 0 (lowest validation loss wins)", ["--selection-se", "0"]),
    "no-refit": ("no refit of the kept start on train + validation",
                 ["--no-abundance-head-refit"]),
    "lr-3e-3": ("lr 3e-3 (the benchmark preset's)", ["--lr", "3e-3"]),
    "epochs-10": ("10 epochs (the recipe: 20)", ["--epochs", "10"]),
    "catlr-1e-3": ("categorical lr 1e-3, the encoder's lr (the recipe: 1e-2)",
                   ["--categorical-lr", "1e-3"]),
    "warmup-0.3": ("warm-up over 30% of the steps (the recipe: 10%)",
                   ["--warmup-fraction", "0.3"]),
    "weight-decay-0.1": ("weight decay 0.1 (the recipe: 0.01)", ["--weight-decay", "0.1"]),
    "freeze-base": ("the encoder frozen, only the new path trains", ["--freeze-base"]),
    "selection-folds-5": ("selection on 5 inner folds of subjects", ["--selection-folds", "5"]),
}


#: flags every run adds after SIZES (the recipe fine-tunes 20 epochs: FinetuneConfig's default)
COMMON = ["--epochs", "20"]


def aam(args: list[str], log: Path, env: dict) -> None:
    with open(log, "w") as fh:
        code = subprocess.call([sys.executable, "-m", "aam.cli", *args], stdout=fh,
                               stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-10:])
        raise SystemExit(f"aam {args[0]} failed ({code}); {log}:\n{tail}")


def prepare(work: Path, folds: int, env: dict) -> Path:
    sim, prep, split = work / "sim", work / "prep", work / "split"
    if not (sim / "truth.json").exists():
        aam(["simulate", *SIM, "--output-dir", str(sim)], work / "simulate.log", env)
    if not (prep / "prepare.json").exists():
        aam(["prepare", "--table", str(sim / "table.biom"), "--metadata",
             str(sim / "metadata.tsv"), "--tree", str(sim / "tree.nwk"), "--metadata-column",
             "target", "--categorical-columns", "category", "--output-dir", str(prep)],
            work / "prepare.log", env)
    if not (split / "splits.json").exists():
        aam(["split", "--metadata", str(prep / "metadata.tsv"), "--group-by", "subject",
             "--folds", str(folds), "--inner-val-fraction", "0.2", "--output-dir", str(split)],
            work / "split.log", env)
    return split


def workspace(workdir: Path, folds: int, threads: int) -> tuple[Path, dict, Path]:
    """The work folder (made if missing), the runs' environment (``threads`` torch threads, this
    checkout's aam) and the simulator's grouped split."""
    work = workdir.resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(REPO)}
    return work, env, prepare(work, folds, env)


def oof(work: Path, split: Path, folds: int, variant: str, flags: list[str],
        env: dict) -> dict[str, float]:
    """Out-of-fold predictions of one variant (each fold's test subjects, predicted once)."""
    out: dict[str, float] = {}
    for k in range(folds):
        fold, run = split / f"fold~{k}", work / "runs" / variant / f"fold~{k}"
        if not (run / "test" / "predictions.tsv").exists():
            aam(["train", "--data-dir", str(work / "prep"), "--train-samples",
                 str(fold / "train_samples.txt"), "--val-samples", str(fold / "val_samples.txt"),
                 "--output-dir", str(run), "--group-by", "subject", "--categorical-columns",
                 "category", "--seed", "0", *SIZES, *flags],
                work / f"{variant}-{k}.train.log", env)
            aam(["predict", "--model", str(run / "model.pt"), "--data-dir", str(work / "prep"),
                 "--samples", str(fold / "test_samples.txt"), "--output",
                 str(run / "test" / "predictions.tsv"), "--device", "cpu"],
                work / f"{variant}-{k}.predict.log", env)
        for line in (run / "test" / "predictions.tsv").read_text().splitlines()[1:]:
            cells = line.split("\t")
            out[cells[0]] = float(cells[1])
    return out


def compare(work: Path, predictions: dict, n_bootstrap: int) -> list[dict]:
    import pandas as pd

    from aam.reports.stats import subject_bootstrap

    meta = pd.read_csv(work / "prep" / "metadata.tsv", sep="\t", dtype=str).set_index(
        "sample_id")
    ids = sorted(predictions["recipe"])
    actual = meta.loc[ids, "target"].astype(float).to_numpy()
    subjects = meta.loc[ids, "subject"].to_numpy()
    base = np.array([[predictions["recipe"][s] for s in ids]])
    rows = []
    for variant in predictions:
        values = np.array([[predictions[variant][s] for s in ids]])
        stats = subject_bootstrap("regression", actual, values, base, subjects,
                                  n_bootstrap=n_bootstrap, seed=0)["r2"]
        rows.append({"variant": variant, "setting": VARIANTS[variant][0], "r2": stats["model"],
                     "reference": variant == "recipe",
                     "diff": stats["diff"], "low": stats["ci_low"], "high": stats["ci_high"]})
    return rows


def verdict(row: dict) -> str:
    if row["reference"]:
        return "the recipe"
    from aam.reports.stats import interval_verdict

    words = interval_verdict(row["low"], row["high"])
    return f"{words}: {'change' if words == 'better' else 'keep'} the recipe"


def markdown(rows: list[dict], folds: int, seconds: float) -> str:
    lines = ["| variant | setting | out-of-fold R² | variant - recipe [95% CI] | decision |",
             "|---|---|---|---|---|"]
    for r in rows:
        diff = ("" if r["reference"]
                else f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]")
        lines.append(f"| {r['variant']} | {r['setting']} | {r['r2']:.3f} | {diff} | "
                     f"{verdict(r)} |")
    lines += ["", f"Simulator ({' '.join(SIM)}), {folds} folds grouped by subject, epochs chosen "
              "on an inner 20% of each fold's training subjects, categorical column `category`, "
              f"sizes `{' '.join([*SIZES, *COMMON])}` (later flags win), no "
              f"pretraining; {seconds / 60:.1f} min."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("aam-recipe"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", nargs="+",
                        help="a subset of the variants (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)
    variants = list(args.variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: {list(VARIANTS)}")
    if "recipe" not in variants:
        variants.insert(0, "recipe")
    start = time.perf_counter()
    work, env, split = workspace(args.workdir, args.folds, args.threads)
    predictions = {}
    for variant in variants:
        flags = [*COMMON, *VARIANTS[variant][1]]  # later flags win
        predictions[variant] = oof(work, split, args.folds, variant, flags, env)
        print(f"{variant}: {len(predictions[variant])} out-of-fold predictions", flush=True)
    rows = compare(work, predictions, args.n_bootstrap)
    table = markdown(rows, args.folds, time.perf_counter() - start)
    (work / "recipe.md").write_text(table + "\n")
    (work / "recipe.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
