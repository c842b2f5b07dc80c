"""Fusion on top of the fitted start, on the simulator (development data only).

For each seed: the fitted start alone ("head": ``aam train`` whose start wins, refitted on
training + validation samples as the pipeline does), then each fusion fine-tuned on top of the
same start. Per run: test R2 of the delivered model (``model.pt``) and of the last epoch
(``checkpoints/last.pt``), the best epoch, how much of the true interaction term
``interaction[category] * z_0`` the last epoch's residual over the start explains (R2 of a
straight-line fit of the term on ``prediction - start prediction``, test samples), and how far
shuffling the category moves its predictions (``aam predict --permutation-check``, in target
SDs; for "head", of the start fitted on the training samples, which the fine-tuned runs start
from). Prints a markdown table (mean +- SD over seeds).

    python benchmarks/sim_fusion.py --workdir /tmp/sim-fusion --seeds 0 1 2 \\
        --fusions head concat gmu cross-attention perceiver --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

SIM = ["--samples", "400", "--seed", "21"]
SPLIT = ["--group-by", "subject", "--val-fraction", "0.2", "--test-fraction", "0.25"]
MODEL = ["--embedding-dim", "32", "--attention-layers", "1", "--attention-heads", "4",
         "--token-limit", "128", "--group-by", "subject", "--categorical-columns", "category",
         "--device", "cpu"]


def aam(args: list[str], log: Path, env: dict) -> None:
    """Run ``python -m aam.cli ARGS`` with output to ``log``; raise with the log's tail."""
    with open(log, "w") as fh:
        rc = subprocess.call([sys.executable, "-m", "aam.cli", *args], stdout=fh,
                             stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"aam {args[0]} failed ({rc}); {log}:\n" + "\n".join(tail))


def prepare(work: Path, env: dict) -> Path:
    """Simulate, prepare and split once; returns the fold folder."""
    sim, prep, split = work / "sim", work / "prep", work / "split"
    if not (sim / "truth.json").exists():
        aam(["simulate", *SIM, "--output-dir", str(sim)], work / "simulate.log", env)
    if not (prep / "prepare.json").exists():
        aam(["prepare", "--table", str(sim / "table.biom"), "--metadata",
             str(sim / "metadata.tsv"), "--metadata-column", "target", "--categorical-columns",
             "category", "--output-dir", str(prep)], work / "prepare.log", env)
    if not (split / "splits.json").exists():
        aam(["split", "--metadata", str(sim / "metadata.tsv"), *SPLIT, "--output-dir",
             str(split)], work / "split.log", env)
    return split / "fold~0"


def interaction_term(work: Path) -> dict[str, float]:
    """``interaction[category] * z_0`` per sample, as ``aam.data.simulate._target`` makes it:
    ``z_0`` the clade-0 log relative abundance (reads + 0.5 over depth) standardised over all
    samples. The simulation is regenerated from its config and checked against the files."""
    import pandas as pd

    from aam.data.simulate import SimulationConfig, simulate

    truth = json.loads((work / "sim" / "truth.json").read_text())
    data = simulate(SimulationConfig(**truth["config"]))
    meta = pd.read_csv(work / "sim" / "metadata.tsv", sep="\t", index_col=0)
    assert list(meta.index) == list(data.sample_ids)
    assert np.allclose(meta["target"].to_numpy(), data.metadata["target"].to_numpy(), atol=1e-5)
    clade = next(c for c in truth["clades"] if c["name"] == truth["interaction_clade"])
    depth = data.counts.sum(1)
    log_abund = np.log((data.counts[:, clade["asv_index"]].sum(1) + 0.5) / depth)
    z0 = (log_abund - log_abund.mean()) / (log_abund.std() + 1e-9)
    assert abs(log_abund.mean() - clade["log_abundance_mean"]) < 1e-5
    slope = np.array([truth["interaction"][c] for c in meta["category"]])
    return dict(zip(meta.index, slope * z0))


def predictions(path: Path) -> dict[str, float]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {r[0]: float(r[1]) for r in rows}


def r2(actual: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((actual - pred) ** 2).sum() / ((actual - actual.mean()) ** 2).sum())


def predict(model: Path, fold: Path, work: Path, out: Path, env: dict,
            permutation: bool) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    aam(["predict", "--model", str(model), "--data-dir", str(work / "prep"), "--samples",
         str(fold / "test_samples.txt"), "--output", str(out / "predictions.tsv"),
         "--device", "cpu", *(["--permutation-check"] if permutation else [])],
        out / "predict.log", env)
    return predictions(out / "predictions.tsv")


def run(work: Path, fold: Path, name: str, seed: int, epochs: int, extra: list[str],
        env: dict, actual: dict, term: dict, tag: str = "") -> dict:
    """Train one model and measure it on the test samples."""
    head = name == "head"
    runs = work / "runs" / ("" if head else tag)  # the start does not depend on the flags
    runs.mkdir(parents=True, exist_ok=True)
    out = runs / f"{name}-s{seed}"
    flags = (["--epochs", "1", "--lr", "1e-12", "--selection-se", "1e6",
              "--categorical-fusion", "concat"] if head
             else ["--epochs", str(epochs), "--categorical-fusion", name])
    if not (out / "model.pt").exists():
        aam(["train", "--data-dir", str(work / "prep"), "--train-samples",
             str(fold / "train_samples.txt"), "--val-samples", str(fold / "val_samples.txt"),
             "--output-dir", str(out), "--seed", str(seed), *MODEL, *flags,
             *([] if head else extra)], runs / f"{name}-s{seed}.train.log", env)
    metrics = json.loads((out / "metrics.json").read_text())
    ids = sorted(term)
    y = np.array([actual[s] for s in ids])
    delivered = predict(out / "model.pt", fold, work, out / "test", env, permutation=False)
    row = {"name": name, "seed": seed, "best_epoch": metrics["best_epoch"],
           "test_r2": r2(y, np.array([delivered[s] for s in ids]))}
    if head:
        start = predict(out / "checkpoints" / "best.pt", fold, work, out / "test-start", env,
                        permutation=True)  # the start fitted on the training samples
        perm = json.loads((out / "test-start" / "permutation.json").read_text())
        row.update(last_r2=r2(y, np.array([start[s] for s in ids])), gain=float("nan"),
                   interaction_r2=float("nan"),
                   shuffle_move=perm["columns"]["category"]["prediction_change"], start=start)
        return row
    last = predict(out / "checkpoints" / "last.pt", fold, work, out / "test-last", env,
                   permutation=True)
    perm = json.loads((out / "test-last" / "permutation.json").read_text())
    row.update(last_r2=r2(y, np.array([last[s] for s in ids])),
               shuffle_move=perm["columns"]["category"]["prediction_change"], last=last)
    return row


def explained(term: dict, last: dict, start: dict) -> float:
    """R2 of the straight-line fit of the true interaction term on the residual."""
    ids = sorted(term)
    t = np.array([term[s] for s in ids])
    resid = np.array([last[s] - start[s] for s in ids])
    if resid.std() == 0:
        return 0.0
    return float(np.corrcoef(t, resid)[0, 1] ** 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("sim-fusion"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fusions", nargs="+",
                        default=["head", "concat", "gmu", "cross-attention", "perceiver"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-flags", default="",
                        help="extra aam train flags for the fine-tuned runs (one string)")
    parser.add_argument("--tag", default="default",
                        help="runs/TAG/ holds the fine-tuned runs (one tag per setting)")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per run")
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1],
                        help="folder holding the aam package to run (default: this checkout)")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "PYTHONPATH": str(args.source.resolve())}
    sys.path.insert(0, str(args.source.resolve()))
    fold = prepare(work, env)
    term = {s: v for s, v in interaction_term(work).items()
            if s in set((fold / "test_samples.txt").read_text().split())}
    meta = (work / "sim" / "metadata.tsv").read_text().splitlines()
    actual = {r.split("\t")[0]: float(r.split("\t")[1]) for r in meta[1:]}
    extra = shlex.split(args.train_flags)
    rows = []
    for seed in args.seeds:
        start = run(work, fold, "head", seed, args.epochs, extra, env, actual, term)
        if "head" in args.fusions:
            rows.append(start)
        for name in (f for f in args.fusions if f != "head"):
            row = run(work, fold, name, seed, args.epochs, extra, env, actual, term, args.tag)
            row["interaction_r2"] = explained(term, row.pop("last"), start["start"])
            row["gain"] = row["last_r2"] - start["last_r2"]
            rows.append(row)
            print(f"{name} seed {seed}: " + " ".join(
                f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)), flush=True)
    print(table(rows, args))
    return 0


def table(rows: list[dict], args) -> str:
    def cell(values):
        values = [v for v in values if v == v]
        if not values:
            return "-"
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 \
            else f"{values[0]:.3f}"

    lines = ["| model | test R² (model.pt) | test R² (last epoch; head: start fitted on train) | "
             "last epoch − start | best epochs | interaction explained (R²) | "
             "category shuffle moves (SD) |",
             "|---|---|---|---|---|---|---|"]
    for name in args.fusions:
        mine = [r for r in rows if r["name"] == name]
        lines.append(f"| {name} | {cell([r['test_r2'] for r in mine])} | "
                     f"{cell([r['last_r2'] for r in mine])} | "
                     f"{cell([r['gain'] for r in mine])} | "
                     f"{', '.join(str(r['best_epoch']) for r in mine)} | "
                     f"{cell([r['interaction_r2'] for r in mine])} | "
                     f"{cell([r['shuffle_move'] for r in mine])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
