"""UniFrac distances: Newick/.qza trees and vectorised unweighted UniFrac.

Unweighted UniFrac: Lozupone C. & Knight R. (2005) "UniFrac: a new phylogenetic method for
comparing microbial communities", Appl Environ Microbiol 71:8228-8235.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from aam.data.qza import read_text_input
from aam.data.unifrac_fast import (branch_presence, distances_from_shared, index_tree,
                                   shared_length)
from aam.errors import InputError
from aam.validate import check_branch_lengths

if TYPE_CHECKING:  # scikit-bio is imported only where a tree is read: loading prepared data
    from skbio import TreeNode  # (e.g. on a GPU machine without it) does not need it

log = logging.getLogger(__name__)


def read_tree(path: str | Path) -> TreeNode:
    """Read a Newick tree or a Phylogeny ``.qza``; an unrooted tree is rooted at its midpoint.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        The file is not a Newick tree.
    """
    path = Path(path)
    text = read_text_input(path, "tree", ".nwk", "Phylogeny[Rooted]")
    if not text.strip().endswith(";"):
        raise InputError(f"{path} is not a Newick tree (it must end with ';'). Pass a .nwk "
                         "file or a Phylogeny .qza.")
    from skbio import TreeNode

    try:
        with warnings.catch_warnings():  # scikit-bio warns before failing; our error says it
            warnings.simplefilter("ignore")
            tree = TreeNode.read(io.StringIO(text), format="newick")
    except Exception as err:  # noqa: BLE001 - scikit-bio's parser raises many kinds
        reason = str(err).splitlines()[0][:100] if str(err) else type(err).__name__
        raise InputError(f"{path} is not a valid Newick tree ({reason}). Pass a .nwk file or a "
                         "Phylogeny .qza.") from None
    check_branch_lengths(tree, str(path))
    if len(tree.children) > 2:
        log.info("tree %s is unrooted (%d children at the root); rooting it at the midpoint",
                 path, len(tree.children))
        tree = tree.root_at_midpoint()
    return tree


def match_tree_tips(tree: TreeNode, feature_ids: list[str], sequences: list[str],
                    source: str) -> list[str | None]:
    """Tip name of each feature: its table ID, else its sequence; None when not in the tree.

    Raises
    ------
    InputError
        No feature is a tip of the tree.
    """
    tips = {tip.name for tip in tree.tips()}
    names = [fid if fid in tips else seq if seq in tips else None
             for fid, seq in zip(feature_ids, sequences)]
    if all(name is None for name in names):
        raise InputError(
            f"None of the {len(feature_ids)} table features is a tip of the tree {source} "
            f"(table IDs like {', '.join(feature_ids[:2])}; tips like "
            f"{', '.join(sorted(tips)[:2])}). Pass the tree built from this table's features."
        )
    return names


def unweighted_unifrac(counts: sp.csr_matrix, tip_names: list[str], tree: TreeNode
                       ) -> np.ndarray:
    """Unweighted UniFrac distances between the rows of ``counts``.

    A sample has a branch when a tip below it has a positive count. With ``P`` [N, K] the 0/1
    presence of the K branches (lengths ``b``) in the N samples,
    ``shared = P diag(b) P^T``, ``L_i = shared_ii`` and ``union_ij = L_i + L_j - shared_ij``,
    the distance is ``(union - shared) / union``: the unique fraction of the observed branch
    length (Lozupone & Knight 2005). As in Striped UniFrac (McDonald et al. 2018), the work
    runs over branches, each updating all sample pairs at once, not over pairs; here that
    update is a matrix product (dense BLAS blocks for common branches, sparse for rare ones).

    Parameters
    ----------
    counts : scipy.sparse.csr_matrix [N, A]
        Counts, non-negative.
    tip_names : list of str [A]
        Tree tip of each column, each at most once.
    tree : skbio.TreeNode
        Rooted tree with branch lengths whose tips include ``tip_names``; other tips are ignored.

    Returns
    -------
    numpy.ndarray float64 [N, N]
        Symmetric, zero diagonal; equal to scikit-bio's
        ``beta_diversity("unweighted_unifrac", ...)`` to rounding (about 1e-15), including its
        conventions: the root's length counts when set; a pair of samples with no observed
        branch length (e.g. two empty samples) is at distance 0.

    Raises
    ------
    InputError
        Negative counts; an unrooted tree, missing branch lengths, repeated tip names, or
        ``tip_names`` that are not tips of the tree or repeat.

    Notes
    -----
    Memory beyond the [N, N] result is about two more [N, N] float64 matrices, one 64 MiB
    block of branches x samples and ``K * N / 8`` bytes of presence bits.

    References
    ----------
    .. [1] Lozupone C. & Knight R. (2005) "UniFrac: a new phylogenetic method for comparing
       microbial communities", Appl Environ Microbiol 71:8228-8235.
    .. [2] McDonald D. et al. (2018) "Striped UniFrac: enabling microbiome analysis at
       unprecedented scale", Nat Methods 15:847-848.
    """
    counts = sp.csr_matrix(counts)
    n_samples = counts.shape[0]
    if 0 in counts.shape:
        return np.zeros((n_samples, n_samples), dtype=np.float64)
    if counts.data.size and counts.data.min() < 0:
        raise InputError(f"UniFrac needs non-negative counts; the table has "
                         f"{int((counts.data < 0).sum())} negative values. Fix the table.")
    branches = index_tree(tree, list(tip_names))
    bits = branch_presence(counts, branches)  # [K, ceil(N / 8)]
    return distances_from_shared(shared_length(bits, branches.length, n_samples))
