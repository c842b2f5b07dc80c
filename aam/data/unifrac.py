"""UniFrac distances: Newick/.qza trees, unweighted UniFrac via scikit-bio, precomputed matrices.

Unweighted UniFrac: Lozupone C. & Knight R. (2005) "UniFrac: a new phylogenetic method for
comparing microbial communities", Appl Environ Microbiol 71:8228-8235.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from skbio import TreeNode
from skbio.diversity import beta_diversity
from skbio.tree import TreeError

from aam.data.qza import read_text_input
from aam.errors import InputError, first_items

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
    tree = TreeNode.read(io.StringIO(text), format="newick")
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

    Parameters
    ----------
    counts : scipy.sparse.csr_matrix [N, A]
        Counts; every row has at least one read.
    tip_names : list of str [A]
        Tree tip of each column.
    tree : skbio.TreeNode
        Rooted tree with branch lengths whose tips include ``tip_names``.

    Returns
    -------
    numpy.ndarray float64 [N, N]
        Symmetric, zero diagonal.
    """
    dense = np.asarray(sp.csr_matrix(counts).todense())
    sample_ids = [str(i) for i in range(dense.shape[0])]
    try:
        matrix = beta_diversity("unweighted_unifrac", dense, ids=sample_ids, taxa=list(tip_names),
                                tree=tree)
    except (ValueError, TreeError) as err:
        raise InputError(f"UniFrac failed on the tree: {str(err).splitlines()[0]} "
                         "Pass a rooted tree with branch lengths.") from err
    return np.asarray(matrix.data, dtype=np.float64)


def read_distance_matrix(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a precomputed distance matrix: ``.npy`` + sibling IDs file, ``.h5``, or skbio TSV.

    The ``.npy`` IDs come from ``<stem>.ids.txt`` or ``<stem>.txt`` (one ID a line); the ``.h5``
    has datasets ``ids`` and ``matrix``; anything else is read as scikit-bio's TSV format.

    Returns
    -------
    (list of str [N], numpy.ndarray float64 [N, N])

    Raises
    ------
    FileNotFoundError
        ``path`` (or the ``.npy`` IDs file) does not exist.
    InputError
        Not square, IDs and matrix disagree in size, or the file cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"distance matrix file not found: {path}")
    if path.suffix == ".npy":
        ids_path = next((p for p in (path.with_suffix(".ids.txt"), path.with_suffix(".txt"))
                         if p.is_file()), None)
        if ids_path is None:
            raise FileNotFoundError(
                f"IDs file for {path} not found: {path.with_suffix('.ids.txt')}")
        ids = [line.strip() for line in ids_path.read_text().splitlines() if line.strip()]
        matrix = np.load(path, allow_pickle=False)
    elif path.suffix in (".h5", ".hdf5"):
        ids, matrix = read_unifrac(path)
    else:
        frame = pd.read_csv(path, sep="\t", index_col=0, dtype={0: str})
        frame.index = frame.index.astype(str)
        ids, matrix = list(frame.index), frame.to_numpy(dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(ids):
        raise InputError(f"{path}: distance matrix of shape {matrix.shape} does not match its "
                         f"{len(ids)} IDs; it must be square with one ID per row.")
    return ids, matrix


def align_distance_matrix(ids: list[str], matrix: np.ndarray, sample_ids: list[str],
                          source: str) -> np.ndarray:
    """Reorder (and subset) ``matrix`` [M, M] to ``sample_ids`` [N]; float64 [N, N].

    Raises
    ------
    InputError
        Samples absent from the matrix, naming them.
    """
    position = {sid: i for i, sid in enumerate(ids)}
    missing = [sid for sid in sample_ids if sid not in position]
    if missing:
        raise InputError(f"{first_items(missing)} samples of the table are not in the distance "
                         f"matrix {source}. Recompute the matrix for these samples or pass "
                         "--tree instead.")
    order = np.array([position[sid] for sid in sample_ids], dtype=np.int64)
    return matrix[np.ix_(order, order)]


def write_unifrac(path: str | Path, sample_ids: list[str], matrix: np.ndarray) -> None:
    """Write ``unifrac.h5`` (datasets ``ids`` utf-8, ``matrix`` float32 [N, N]) at ``path``
    (not atomic: callers pass a temporary path)."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("ids", data=np.array(sample_ids, dtype=object),
                              dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("matrix", data=np.asarray(matrix, dtype=np.float32))


def read_unifrac(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read ``unifrac.h5``: (IDs [N], matrix float32 [N, N])."""
    with h5py.File(path, "r") as handle:
        ids = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in handle["ids"][()]]
        matrix = handle["matrix"][()]
    return ids, matrix
