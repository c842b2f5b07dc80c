"""What attention fusion and the metadata add over the fitted start, on the simulator.

The simulator's target has clade effects, a category main effect and a category x clade-0
interaction (``truth.json``). Five folds grouped by subject (each fold's epochs chosen on an
inner 20% of its training subjects, its test subjects predicted once), several model seeds,
the same folds for every row:

- ``head-only``: the fitted start with the category's one-hot main effects and no attention path
  (the reference: what attention fusion must beat);
- one row per fusion, fine-tuned on top of that start (the recipe's defaults);
- ``no-metadata``: the same model without the categorical column;
- ``head-only-no-metadata``: the fitted start alone without it (against ``no-metadata``: what
  the attention path adds when there is no metadata to fuse);
- ``forest+meta`` / ``linear+meta``: ``aam rf-baseline`` / ``aam linear-baseline`` given the
  same category one-hot, trained on each fold's training subjects.

Per row: pooled out-of-fold R² (mean over seeds) and paired subject-bootstrap 95% intervals of
the difference to head-only, to no-metadata and to the forest; how far shuffling the category
over the test samples moves the predictions (``aam predict --permutation-check``, in target
standard deviations); and how much of the true interaction term ``interaction[category] * z_0``
the row's difference to head-only explains (1 - SSE / SS of that term, pooled over folds and
seeds, and the correlation).

    python benchmarks/fusions.py --workdir /tmp/aam-fusions          # prints a markdown table

About 25 minutes on 2 cores for 3 seeds. The acceptance the table is read against is printed
under it (each line PASS or FAIL, computed from the rows).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from recipe import COMMON, SIM, SIZES, aam, workspace  # noqa: E402

#: row -> (what it is, aam train flags): the fitted start with the metadata's main effects and
#: no attention path (the reference), each fusion fine-tuned on top, and no metadata at all.
FUSIONS = {
    "head-only": ("fitted start with one-hot main effects, no attention path (refitted on "
                  "training + validation)", ["--no-attention-path"]),
    "concat": ("concat fusion fine-tuned on top (the recipe)", []),
    "gmu": ("gmu fusion", ["--categorical-fusion", "gmu"]),
    "cross-attention": ("cross-attention fusion", ["--categorical-fusion", "cross-attention"]),
    "perceiver": ("perceiver fusion", ["--categorical-fusion", "perceiver"]),
    "no-metadata": ("no categorical column (sequence and abundance only)",
                    ["--categorical-columns", ""]),
    "head-only-no-metadata": ("the fitted start alone, no categorical column (what the path "
                              "adds without metadata: its no-metadata column)",
                              ["--categorical-columns", "", "--no-attention-path"]),
}
#: rows without the categorical column (no shuffle check)
NO_METADATA = ("no-metadata", "head-only-no-metadata")

FUSION_ROWS = ("concat", "gmu", "cross-attention", "perceiver")
ATTENTION_FUSIONS = ("gmu", "cross-attention", "perceiver")
BASELINES = {"forest+meta": ("random forest on relative abundances + category one-hot",
                             "rf-baseline"),
             "linear+meta": ("ridge on CLR abundances + category one-hot", "linear-baseline")}


def read_predictions(path: Path) -> dict[str, float]:
    rows = path.read_text().splitlines()[1:]
    return {cells[0]: float(cells[1]) for cells in (line.split("\t") for line in rows)}


def train_run(work: Path, split: Path, k: int, variant: str, seed: int, env: dict) -> Path:
    """One fold of one AAM row at one seed: train, predict the test subjects, shuffle check."""
    fold = split / f"fold~{k}"
    run = work / "runs" / variant / f"seed~{seed}" / f"fold~{k}"
    test = run / "test" / "predictions.tsv"
    if not test.exists():
        aam(["train", "--data-dir", str(work / "prep"), "--train-samples",
             str(fold / "train_samples.txt"), "--val-samples", str(fold / "val_samples.txt"),
             "--output-dir", str(run), "--group-by", "subject", "--categorical-columns",
             "category", "--seed", str(seed), *SIZES, *COMMON, *FUSIONS[variant][1]],
            work / f"{variant}-s{seed}-{k}.train.log", env)
        check = ["--permutation-check"] if variant not in NO_METADATA else []
        aam(["predict", "--model", str(run / "model.pt"), "--data-dir", str(work / "prep"),
             "--samples", str(fold / "test_samples.txt"), "--output", str(test),
             "--device", "cpu", *check], work / f"{variant}-s{seed}-{k}.predict.log", env)
    return test


def baseline_run(work: Path, split: Path, k: int, variant: str, env: dict) -> Path:
    fold = split / f"fold~{k}"
    out = work / "runs" / variant / f"fold~{k}" / "predictions.tsv"
    if not out.exists():
        aam([BASELINES[variant][1], "--data-dir", str(work / "prep"), "--metadata-column",
             "target", "--train-samples", str(fold / "train_samples.txt"),
             str(fold / "val_samples.txt"), "--test-samples", str(fold / "test_samples.txt"),
             "--categorical-columns", "category", "--output", str(out)],
            work / f"{variant}-{k}.log", env)
    return out


def shuffle_shift(test: Path) -> float | None:
    """Mean |prediction change| in target sd when the category is shuffled (permutation.json)."""
    path = test.parent / "permutation.json"
    if not path.exists():
        return None
    return float(json.loads(path.read_text())["columns"]["category"]["prediction_change"])


def interaction_term(work: Path) -> dict[str, float]:
    """``interaction[category] * z_0`` of every simulated sample, from ``truth.json``."""
    import biom
    import pandas as pd

    truth = json.loads((work / "sim" / "truth.json").read_text())

    def value(key):
        item = truth[key]
        return ast.literal_eval(item) if isinstance(item, str) else item

    clade = next(c for c in value("clades") if c["name"] == truth["interaction_clade"])
    table = biom.load_table(str(work / "sim" / "table.biom"))
    counts = table.matrix_data.toarray().T  # samples x ASVs, in the simulator's ASV order
    reads = counts[:, clade["asv_index"]].sum(1)
    z = (np.log((reads + 0.5) / counts.sum(1)) - clade["log_abundance_mean"]) \
        / clade["log_abundance_sd"]
    meta = pd.read_csv(work / "sim" / "metadata.tsv", sep="\t", dtype=str)
    category = meta.set_index(meta.columns[0]).loc[table.ids("sample"), "category"]
    effect = value("interaction")
    return {s: effect[c] * zi for s, c, zi in zip(table.ids("sample"), category, z)}


def ceiling(work: Path, ids: list[str], actual: np.ndarray) -> float:
    """R² of the simulator's noise-free target (no subject effect, no noise) on these samples:
    what a model that knew the formula would score."""
    truth = json.loads((work / "sim" / "truth.json").read_text())
    known = truth["noise_free_target"]
    known = ast.literal_eval(known) if isinstance(known, str) else known
    best = np.array([known[s] for s in ids])
    return 1.0 - float(((actual - best) ** 2).sum()) / float(((actual - actual.mean()) ** 2).sum())


def explained(term: np.ndarray, residual: np.ndarray) -> tuple[float, float]:
    """1 - SSE / SS of the interaction term around its mean, and the correlation."""
    ss = float(((term - term.mean()) ** 2).sum())
    return (1.0 - float(((term - residual) ** 2).sum()) / ss,
            float(np.corrcoef(term, residual)[0, 1]))


def summarise(work: Path, preds: dict, shifts: dict, n_bootstrap: int) -> list[dict]:
    import pandas as pd

    from aam.reports.stats import subject_bootstrap

    meta = pd.read_csv(work / "prep" / "metadata.tsv", sep="\t", dtype=str).set_index(
        "sample_id")
    ids = sorted(preds["head-only"][0])
    actual = meta.loc[ids, "target"].astype(float).to_numpy()
    subjects = meta.loc[ids, "subject"].to_numpy()
    units = np.array([interaction_term(work)[s] for s in ids])

    def values(variant):
        return np.array([[run[s] for s in ids] for run in preds[variant]])

    rows = [{"variant": "noise-free", "setting": "the simulator's noise-free target (a ceiling)",
             "r2": ceiling(work, ids, actual)}]
    for variant in preds:
        row = {"variant": variant, "setting": (FUSIONS.get(variant) or BASELINES[variant])[0]}
        for ref in ("head-only", "no-metadata", "forest+meta"):
            if ref == variant:
                continue
            stats = subject_bootstrap("regression", actual, values(variant), values(ref),
                                      subjects, n_bootstrap=n_bootstrap, seed=0)["r2"]
            row["r2"] = stats["model"]
            row[ref] = (stats["diff"], stats["ci_low"], stats["ci_high"])
        if variant in shifts:
            row["shift"] = float(np.mean(shifts[variant]))
        if variant not in ("head-only", *BASELINES):
            residual = (values(variant) - values("head-only")).ravel()
            row["explained"] = explained(np.tile(units, len(preds[variant])), residual)
        rows.append(row)
    return rows


def _ci(cell) -> str:
    if cell is None:
        return ""
    diff, low, high = cell
    from aam.reports.stats import interval_verdict

    word = interval_verdict(low, high)
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] {word}"


def markdown(rows: list[dict], seeds, folds: int, minutes: float) -> str:
    lines = ["| row | setting | R² | vs head-only [95% CI] | vs no-metadata | vs forest+meta | "
             "shuffle moves (target sd) | interaction explained (corr) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shift = f"{r['shift']:.3f}" if "shift" in r else ""
        expl = (f"{r['explained'][0]:+.2f} ({r['explained'][1]:+.2f})" if "explained" in r
                else "")
        lines.append(f"| {r['variant']} | {r['setting']} | {r['r2']:.3f} | "
                     f"{_ci(r.get('head-only'))} | {_ci(r.get('no-metadata'))} | "
                     f"{_ci(r.get('forest+meta'))} | {shift} | {expl} |")
    lines += ["", f"Simulator (`aam simulate {' '.join(SIM)}`), {folds} folds grouped by subject "
              f"x seeds {', '.join(map(str, seeds))}; epochs chosen on an inner 20% of each "
              "fold's training subjects; categorical column `category`; sizes "
              f"`{' '.join([*SIZES, *COMMON])}` (later flags win), no pretraining; R² is the "
              "mean over seeds of the pooled out-of-fold R²; intervals: paired subject "
              f"bootstrap, 95%; {minutes:.1f} min in this invocation (runs already in the "
              "work folder are read back, not retrained)."]
    return "\n".join(lines)


def acceptance(rows: list[dict]) -> list[str]:
    """The checks the issue states, each PASS or FAIL from the rows."""
    by = {r["variant"]: r for r in rows}
    out = []
    for f in FUSION_ROWS:
        diff, low, _ = by[f]["no-metadata"]
        out.append(f"{'PASS' if diff >= 0.10 else 'FAIL'} {f} beats no-metadata by >= 0.10 R² "
                   f"({diff:+.3f}, CI low {low:+.3f})")
        shift = by[f].get("shift", 0.0)
        out.append(f"{'PASS' if shift >= 0.2 else 'FAIL'} shuffling the category moves {f}'s "
                   f"predictions by >= 0.2 target sd ({shift:.3f})")
    for f in ATTENTION_FUSIONS:
        diff, low, high = by[f]["head-only"]
        out.append(f"{'PASS' if low > 0 else 'FAIL'} {f} beats head + one-hot with the CI above "
                   f"0 ({diff:+.3f} [{low:+.3f}, {high:+.3f}])")
    best = max(FUSION_ROWS, key=lambda f: by[f]["r2"])
    diff, low, high = by[best]["forest+meta"]
    out.append(f"{'PASS' if low > 0 else 'FAIL'} the best fusion ({best}) beats the forest "
               f"given the same metadata ({diff:+.3f} [{low:+.3f}, {high:+.3f}])")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("aam-fusions"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    work, env, split = workspace(args.workdir, args.folds, args.threads)
    preds: dict[str, list[dict]] = {}
    shifts: dict[str, list[float]] = {}
    for variant in FUSIONS:
        preds[variant] = []
        for seed in args.seeds:
            merged: dict[str, float] = {}
            for k in range(args.folds):
                test = train_run(work, split, k, variant, seed, env)
                merged.update(read_predictions(test))
                shift = shuffle_shift(test)
                if shift is not None:
                    shifts.setdefault(variant, []).append(shift)
            preds[variant].append(merged)
        print(f"{variant}: {len(args.seeds)} seeds x {args.folds} folds", flush=True)
    for variant in BASELINES:
        merged = {}
        for k in range(args.folds):
            merged.update(read_predictions(baseline_run(work, split, k, variant, env)))
        preds[variant] = [merged] * len(args.seeds)  # deterministic: paired with every seed
    rows = summarise(work, preds, shifts, args.n_bootstrap)
    table = markdown(rows, args.seeds, args.folds, (time.perf_counter() - start) / 60)
    text = table + "\n\nAcceptance:\n\n" + "\n".join(f"- {c}" for c in acceptance(rows)) + "\n"
    (work / "fusions.md").write_text(text)
    (work / "fusions.json").write_text(json.dumps(rows, indent=2, default=list) + "\n")
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
