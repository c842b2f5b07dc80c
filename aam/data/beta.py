"""Beta-diversity metrics for pretraining distances: one registry, with and without a tree.

``BETA_METRICS`` maps each name (the value of ``aam prepare --beta-metric`` and of the workflow
key ``prepare.beta_metric``) to its function and whether it needs a phylogenetic tree. Every
function takes a counts matrix [N samples, A ASVs] and returns a float64 [N, N] distance matrix
(symmetric, zero diagonal):

- ``unweighted-unifrac`` (tree): Lozupone & Knight 2005;
  :func:`aam.data.unifrac.unweighted_unifrac`.
- ``weighted-unifrac`` (tree): normalized weighted UniFrac (Lozupone et al. 2007), values in
  [0, 1], as scikit-bio's ``weighted_unifrac(normalized=True)``, which computes it.
- ``braycurtis``: ``sum|x - y| / sum(x + y)`` on counts (scipy's ``braycurtis``).
- ``jaccard``: presence/absence Jaccard distance ``1 - |X & Y| / |X | Y|``.
- ``aitchison``: robust Aitchison (Martino et al. 2019): the robust CLR (log of the non-zero
  counts minus their mean log, zeros left at 0) then the Euclidean distance, as scikit-bio's
  ``rclr`` (NaN at zeros, set to 0) followed by scipy's ``euclidean``. No matrix completion.

Two empty samples are at distance 0 under every metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import pdist, squareform

from aam.errors import InputError


@dataclass(frozen=True)
class BetaMetric:
    """One entry of the registry: how to compute it and whether it needs a tree."""

    name: str
    needs_tree: bool
    compute: Callable  # (counts csr [N, A], tip_names, tree) -> float64 [N, N]
    summary: str


def _unweighted_unifrac(counts, tips, tree) -> np.ndarray:
    from aam.data.unifrac import unweighted_unifrac

    return unweighted_unifrac(counts, tips, tree)


def _weighted_unifrac(counts, tips, tree) -> np.ndarray:
    from skbio.diversity import beta_diversity

    dense = np.asarray(sp.csr_matrix(counts).todense())
    result = beta_diversity("weighted_unifrac", dense, taxa=list(tips), tree=tree,
                            normalized=True, validate=True)
    return np.nan_to_num(result.data, nan=0.0)


def braycurtis(counts, tips=None, tree=None) -> np.ndarray:
    """Bray-Curtis distances between the rows of ``counts`` [N, A]: float64 [N, N]."""
    dense = np.asarray(sp.csr_matrix(counts, dtype=np.float64).todense())
    if dense.shape[0] < 2:
        return np.zeros((dense.shape[0],) * 2)
    # sum|x-y| / sum(x+y); 0/0 (two empty samples) is 0
    total = dense.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = squareform(pdist(dense, "cityblock")) / (total[:, None] + total[None, :])
    return _finish(dist)


def jaccard(counts, tips=None, tree=None) -> np.ndarray:
    """Presence/absence Jaccard distances between the rows of ``counts`` [N, A]: [N, N]."""
    present = (sp.csr_matrix(counts) > 0).astype(np.float64)
    shared = np.asarray((present @ present.T).todense())  # [N, N] ASVs in both
    richness = np.diag(shared)
    union = richness[:, None] + richness[None, :] - shared
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 1.0 - shared / union
    return _finish(dist)


def robust_clr(counts) -> np.ndarray:
    """Robust CLR of each row: log of its non-zero entries minus their mean; zeros stay 0.

    Returns
    -------
    numpy.ndarray float64 [N, A]
    """
    dense = np.asarray(sp.csr_matrix(counts, dtype=np.float64).todense())
    nonzero = dense > 0
    logs = np.where(nonzero, np.log(np.where(nonzero, dense, 1.0)), 0.0)
    n_nonzero = nonzero.sum(axis=1, keepdims=True)
    mean = np.divide(logs.sum(axis=1, keepdims=True), n_nonzero,
                     out=np.zeros((dense.shape[0], 1)), where=n_nonzero > 0)
    return np.where(nonzero, logs - mean, 0.0)


def aitchison(counts, tips=None, tree=None) -> np.ndarray:
    """Robust Aitchison distances: Euclidean distances of :func:`robust_clr` rows; [N, N]."""
    clr = robust_clr(counts)
    if clr.shape[0] < 2:
        return np.zeros((clr.shape[0],) * 2)
    return _finish(squareform(pdist(clr, "euclidean")))


def _finish(dist: np.ndarray) -> np.ndarray:
    dist = np.nan_to_num(np.asarray(dist, dtype=np.float64), nan=0.0)
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, 0.0)
    return dist


BETA_METRICS: dict[str, BetaMetric] = {m.name: m for m in (
    BetaMetric("unweighted-unifrac", True, _unweighted_unifrac,
               "unweighted UniFrac (presence, branch lengths)"),
    BetaMetric("weighted-unifrac", True, _weighted_unifrac,
               "normalized weighted UniFrac (abundance, branch lengths)"),
    BetaMetric("braycurtis", False, braycurtis, "Bray-Curtis on counts"),
    BetaMetric("jaccard", False, jaccard, "Jaccard on presence/absence"),
    BetaMetric("aitchison", False, aitchison, "robust Aitchison (robust CLR + Euclidean)"),
)}
TREE_FREE = tuple(name for name, m in BETA_METRICS.items() if not m.needs_tree)


def resolve_metric(metric: Optional[str], has_tree: bool) -> Optional[str]:
    """The metric to compute: ``metric``, else unweighted UniFrac with a tree, else None.

    Raises
    ------
    InputError
        An unknown name (listing the known ones) or a tree metric without a tree (listing the
        tree-free ones).
    """
    if metric is None:
        return "unweighted-unifrac" if has_tree else None
    if metric not in BETA_METRICS:
        raise InputError(f"--beta-metric must be one of {', '.join(BETA_METRICS)}; got "
                         f"{metric!r}.")
    if BETA_METRICS[metric].needs_tree and not has_tree:
        raise InputError(f"--beta-metric {metric} needs a phylogenetic tree (--tree). Without "
                         f"one, use a metric that needs none: {', '.join(TREE_FREE)}.")
    return metric


def beta_distances(metric: str, counts, tips=None, tree=None) -> np.ndarray:
    """Distances of ``metric`` between the rows of ``counts`` [N, A]: float64 [N, N].

    Raises
    ------
    InputError
        Negative counts.
    """
    counts = sp.csr_matrix(counts)
    if counts.data.size and counts.data.min() < 0:
        raise InputError(f"{metric} needs non-negative counts; the table has "
                         f"{int((counts.data < 0).sum())} negative values. Fix the table.")
    return BETA_METRICS[metric].compute(counts, tips, tree)


__all__ = ["BETA_METRICS", "TREE_FREE", "BetaMetric", "aitchison", "beta_distances",
           "braycurtis", "jaccard", "resolve_metric", "robust_clr"]
