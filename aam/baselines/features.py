"""Features the baselines share: CLR abundances and one-hot categorical metadata.

The categories of a column are fitted on the training samples (as AAM's vocabulary is); an
evaluation sample with a missing or unseen value gets zeros in that column's block.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from aam.data.categories import encode_categories, fit_categories

DEFAULT_PSEUDOCOUNT = 0.5  # the benchmark's linear row (benchmarks/aam_science)


def clr_abundance(counts, pseudocount: float = DEFAULT_PSEUDOCOUNT) -> np.ndarray:
    """Centred log-ratio of every sample over all ASVs of the table.

    Parameters
    ----------
    counts : sparse or dense [n_samples, n_asvs]
    pseudocount : float
        Added to every count before the log (zeros included).

    Returns
    -------
    ndarray float64 [n_samples, n_asvs]
        ``log(c + p) - mean_j log(c_j + p)`` per row; each row sums to 0.
    """
    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts, dtype=np.float64)
    logs = np.log(dense + pseudocount)
    return logs - logs.mean(axis=1, keepdims=True)


def category_features(metadata: pd.DataFrame, columns: Sequence[str], train_ids: Sequence[str],
                      eval_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One-hot blocks of ``columns`` for the training and evaluation samples.

    Returns
    -------
    x_train, x_eval : ndarray float64 [N_train, F], [N_eval, F]
    names : list of str, length F
        ``column=category`` per feature, columns in the given order, categories sorted.

    Raises
    ------
    InputError
        A column is not in the metadata (naming the available ones).
    """
    if not columns:
        return np.zeros((len(train_ids), 0)), np.zeros((len(eval_ids), 0)), []
    vocab = fit_categories(metadata.loc[list(train_ids)], list(columns))
    names = [f"{col}={cat}" for col, cats in vocab.items() for cat in cats]
    blocks = []
    for ids in (train_ids, eval_ids):
        codes, _ = encode_categories(metadata, vocab, list(ids))  # [N, C]; 0 = missing/unseen
        parts = [np.eye(len(cats) + 1)[codes[:, j]][:, 1:] for j, cats in
                 enumerate(vocab.values())]
        blocks.append(np.hstack(parts) if parts else np.zeros((len(ids), 0)))
    return blocks[0], blocks[1], names


def parse_columns(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``a,b`` (or a sequence) -> ``("a", "b")``; empty or None -> ``()``."""
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else text
    return tuple(c.strip() for c in items if c.strip())
