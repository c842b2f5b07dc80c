"""Kernel of the vectorised unweighted UniFrac: the tree as arrays, branch presence as bits, and
shared branch length of every sample pair as one blocked matrix product."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

from aam.errors import InputError, first_items

if TYPE_CHECKING:
    from skbio import TreeNode

# A dense float64 block of branches x samples is at most this big (64 MiB): 2,796 branches at
# 3,000 samples. Two [N, N] float64 matrices at the peak come on top.
BLOCK_BYTES = 64 * 2**20
# A branch held by more than N / RARE_SHARE samples goes to a dense BLAS block, fewer to a sparse
# product (cost ~ holders^2). On 2 cores 16 was fastest on ibd-2538 (470 samples), on 3,000
# samples resampled from it and on 3,000 random samples over 20,000 tips of a random tree;
# 8 to 32 were within 20%, all-dense 2-4x slower.
RARE_SHARE = 16
# Entries of one sparse block's dense result: 8 MiB of float64.
SPARSE_BLOCK_ENTRIES = 2**20
_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class Branches:
    """The nodes of a tree that have a table ASV below them, children before parents."""

    parent: np.ndarray  # int64 [K], position of the parent node; -1 at the top node
    height: np.ndarray  # int64 [K], 0 at a tip, else 1 + the largest child height
    length: np.ndarray  # float64 [K], branch length above the node; 0 where missing at the root
    column_node: np.ndarray  # int64 [A], node of each table column


def index_tree(tree: TreeNode, tip_names: list[str]) -> Branches:
    """Index the nodes of ``tree`` that lie above a tip in ``tip_names`` [A].

    Checks the tree as scikit-bio's ``_validate_taxa_and_tree`` does (rooted, every non-root
    node has a length, unique tip names, every name a tip), with counts and names in messages.

    Raises
    ------
    InputError
        The tree is unrooted, lacks branch lengths, repeats a tip name, or lacks a tip in
        ``tip_names``; or ``tip_names`` repeats a name.
    """
    if len(tree.root().children) > 2:
        raise InputError(f"UniFrac needs a rooted tree; its root has {len(tree.root().children)}"
                         " children. Root the tree (e.g. at its midpoint) and pass it again.")
    column = {name: j for j, name in enumerate(tip_names)}
    if len(column) != len(tip_names):
        repeated = sorted(name for name, k in Counter(tip_names).items() if k > 1)
        raise InputError(f"{first_items(repeated)} tree tips are named by more than one table "
                         "column. Merge those columns first.")
    column_node = np.full(len(tip_names), -1, dtype=np.int64)
    position: dict[int, int] = {}  # id(node) -> position, for kept nodes
    parent, height, length = [], [], []
    tips: list[str] = []
    no_length: list[str] = []
    for node in tree.postorder(include_self=True):
        if node.length is None and node is not tree:
            no_length.append(str(node.name) if node.name else "(unnamed)")
        if not node.children:
            tips.append(node.name)
            if node.name not in column:
                continue
            column_node[column[node.name]] = len(parent)
            node_height = 0
        else:
            kids = [position[id(c)] for c in node.children if id(c) in position]
            if not kids:
                continue
            for kid in kids:
                parent[kid] = len(parent)
            node_height = 1 + max(height[kid] for kid in kids)
        position[id(node)] = len(parent)
        parent.append(-1)
        height.append(node_height)
        length.append(0.0 if node.length is None else float(node.length))
    _check_tree(no_length, tips, [tip_names[j] for j in np.flatnonzero(column_node < 0)])
    lengths = np.nan_to_num(np.array(length, dtype=np.float64), nan=0.0)  # as skbio's to_array
    return Branches(np.array(parent, dtype=np.int64), np.array(height, dtype=np.int64), lengths,
                    column_node)


def _check_tree(no_length: list[str], tips: list[str], missing: list[str]) -> None:
    if no_length:
        raise InputError(f"{first_items(no_length)} non-root nodes of the tree have no branch "
                         "length. Pass a tree with branch lengths.")
    if len(set(tips)) != len(tips):
        repeated = sorted(name for name, k in Counter(tips).items() if k > 1)
        raise InputError(f"{first_items(repeated)} tip names occur more than once in the tree. "
                         "Pass a tree with unique tip names.")
    if missing:
        raise InputError(f"{first_items(missing)} ASVs in the table are not tips in the tree. "
                         "Drop them or pass the tree built from this table's ASVs.")


def branch_presence(counts: sp.csr_matrix, branches: Branches) -> np.ndarray:
    """Which samples have each branch: uint8 [K, ceil(N / 8)], sample i at bit ``128 >> i % 8``
    of byte ``i // 8`` (``np.packbits`` order); a branch is present when a tip below it has a
    positive count."""
    table = sp.coo_matrix(counts)
    positive = table.data > 0
    rows, cols = table.row[positive].astype(np.int64), table.col[positive]
    bits = np.zeros((len(branches.parent), math.ceil(table.shape[0] / 8)), dtype=np.uint8)
    np.bitwise_or.at(bits, (branches.column_node[cols], rows >> 3),
                     np.right_shift(128, rows & 7).astype(np.uint8))
    # A parent of height h is complete once every node below height h is: OR children into
    # parents one parent height at a time (tree height passes, each over many nodes).
    child = np.flatnonzero(branches.parent >= 0)
    child = child[np.argsort(branches.height[branches.parent[child]], kind="stable")]
    parent_height = branches.height[branches.parent[child]]
    bounds = np.flatnonzero(np.diff(parent_height)) + 1
    for level in np.split(child, bounds):
        np.bitwise_or.at(bits, branches.parent[level], bits[level])
    return bits


def shared_length(bits: np.ndarray, length: np.ndarray, n_samples: int,
                  rare_share: int = RARE_SHARE) -> np.ndarray:
    """Branch length shared by each pair of samples, ``P diag(b) P^T``: float64 [N, N], exactly
    symmetric.

    ``P`` [N, K] is the 0/1 presence matrix in ``bits``. A branch held by at most
    ``N / rare_share`` samples goes through a sparse product (its cost grows with the square of
    its holders); the others through dense blocks.
    """
    used = np.flatnonzero(bits.any(axis=1) & (length != 0))
    holders = _POPCOUNT[bits[used]].sum(axis=1, dtype=np.int64)  # [K'], samples per branch
    rare = holders <= max(1, n_samples // rare_share)
    shared = np.zeros((n_samples, n_samples), dtype=np.float64)
    _add_sparse(shared, bits[used[rare]], length[used[rare]])
    _add_dense_lower(shared, bits[used[~rare]], length[used[~rare]])
    for i in range(n_samples - 1):  # the lower triangle is complete: mirror it
        shared[i, i + 1:] = shared[i + 1:, i]
    return shared


def _add_sparse(shared: np.ndarray, bits: np.ndarray, length: np.ndarray) -> None:
    """Add ``P diag(b) P^T`` to ``shared`` [N, N] by sparse products, a block of samples at a
    time (each block's result holds at most SPARSE_BLOCK_ENTRIES entries)."""
    n_samples = shared.shape[0]
    branch, byte = np.nonzero(bits)
    which, bit = np.nonzero(np.unpackbits(bits[branch, byte][:, None], axis=1))
    presence = sp.csr_matrix((np.ones(len(bit)), (branch[which], byte[which] * 8 + bit)),
                             shape=(len(length), n_samples))  # [K, N]
    weighted = sp.csr_matrix(sp.diags(length) @ presence)  # [K, N]
    by_sample = sp.csr_matrix(presence.T)  # [N, K]
    rows = max(1, SPARSE_BLOCK_ENTRIES // n_samples)
    for start in range(0, n_samples, rows):
        shared[start:start + rows] += (by_sample[start:start + rows] @ weighted).toarray()


def _add_dense_lower(shared: np.ndarray, bits: np.ndarray, length: np.ndarray) -> None:
    """Add ``P diag(b) P^T`` to the lower triangle of ``shared`` [N, N] in place: BLAS ``syrk``
    (half the work of a general product) on blocks of branches scaled by ``sqrt(|b|)``, the
    negative lengths with a factor -1."""
    n_samples = shared.shape[0]
    rows = max(1, BLOCK_BYTES // (8 * n_samples))
    for sign in (1.0, -1.0):
        branches = np.flatnonzero(np.sign(length) == sign)
        for start in range(0, len(branches), rows):
            block = branches[start:start + rows]
            x = np.unpackbits(bits[block], axis=1, count=n_samples).astype(np.float64)
            x *= np.sqrt(np.abs(length[block]))[:, None]  # [k, N]
            # shared.T is Fortran-ordered, so BLAS updates it in place; its upper triangle
            # is the lower triangle of shared.
            out = blas.dsyrk(sign, x.T, beta=1.0, c=shared.T, overwrite_c=True)
            assert np.shares_memory(out, shared)


def distances_from_shared(shared: np.ndarray) -> np.ndarray:
    """Unweighted UniFrac ``(union - shared) / union`` with ``union = L_i + L_j - shared`` and
    ``L_i = shared[i, i]``; 0 where the union is 0, as scikit-bio; exactly 0 on the diagonal.
    Overwrites ``shared``."""
    own = np.diag(shared).copy()  # [N], branch length observed in each sample
    union = own[:, None] + own[None, :]
    union -= shared
    distance = np.subtract(union, shared, out=shared)
    empty = union == 0
    union[empty] = 1.0
    distance /= union
    distance[empty] = 0.0
    np.fill_diagonal(distance, 0.0)
    return distance
