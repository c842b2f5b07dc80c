"""Time unweighted UniFrac: scikit-bio's ``beta_diversity`` (the former code) against
``aam.data.unifrac.unweighted_unifrac`` on a real table and tree; prints a markdown table row.

    .venv/bin/python benchmarks/unifrac_bench.py                      # ibd-2538, all samples
    .venv/bin/python benchmarks/unifrac_bench.py --resample 3000      # new code only, 3,000 samples
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from skbio.diversity import beta_diversity

from aam.data.biom_io import read_table
from aam.data.unifrac import match_tree_tips, read_tree, unweighted_unifrac

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ibd-2538"


def _skbio(counts: sp.csr_matrix, names: list[str], tree) -> np.ndarray:
    dense = counts.toarray()
    ids = [str(i) for i in range(dense.shape[0])]
    return beta_diversity("unweighted_unifrac", dense, ids=ids, taxa=names, tree=tree).data


def _timed(function, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with table.biom and tree.nwk")
    parser.add_argument("--resample", type=int, default=0,
                        help="time the new code alone on this many samples drawn with "
                             "replacement, each keeping 30%% of its reads (seeded)")
    args = parser.parse_args()
    table = read_table(args.data / "table.biom")
    tree = read_tree(args.data / "tree.nwk")
    tips = match_tree_tips(tree, table.feature_ids, table.feature_ids, "tree.nwk")
    keep = [j for j, name in enumerate(tips) if name is not None]  # as aam prepare
    counts, names = sp.csr_matrix(table.counts[:, keep]), [tips[j] for j in keep]
    counts = counts[np.asarray(counts.sum(axis=1)).ravel() > 0]
    if args.resample:
        rng = np.random.default_rng(0)
        counts = sp.csr_matrix(counts[rng.integers(0, counts.shape[0], args.resample)])
        counts.data = rng.binomial(counts.data.astype(np.int64), 0.3).astype(np.float64)
        counts.eliminate_zeros()
    unweighted_unifrac(counts[:50], names, tree)  # warm-up: imports, BLAS threads
    new, new_s = _timed(unweighted_unifrac, counts, names, tree)
    old, old_s = (None, float("nan")) if args.resample else _timed(_skbio, counts, names, tree)
    diff = float("nan") if old is None else float(np.abs(new - old).max())
    print(f"1-min load average at the end: {os.getloadavg()[0]:.2f}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("| samples | tips | old s | new s | max abs diff |\n|---|---|---|---|---|")
    print(f"| {counts.shape[0]} | {len(names)} | {old_s:.1f} | {new_s:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
