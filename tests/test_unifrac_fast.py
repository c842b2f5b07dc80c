"""Vectorised unweighted UniFrac against scikit-bio's, by hand, and its input checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.sparse as sp
from skbio import TreeNode
from skbio.diversity import beta_diversity

from aam.data.biom_io import read_table
from aam.data.unifrac import match_tree_tips, read_tree, unweighted_unifrac
from aam.data.unifrac_fast import branch_presence, distances_from_shared, index_tree, shared_length
from aam.errors import InputError
from conftest import shared_dataset

# Root length 0.7 or none; zero-length tip b and internal e; unifurcation u; clade z of zero
# length right under the root; tip g is not in the table.
EDGE_TREES = [
    "(((a:1,b:0):0.5,(c:2,d:1)e:0):1,((x:0,y:0)z:0,(h:1)u:0.5,g:4):0)root:0.7;",
    "(((a:1,b:0):0.5,(c:2,d:1)e:0):1,((x:0,y:0)z:0,(h:1)u:0.5,g:4):0)root;",
]
EDGE_TAXA = list("abcdxyh")
EDGE_COUNTS = np.array([
    [1, 0, 0, 0, 0, 0, 0],  # a
    [0, 0, 0, 0, 0, 0, 0],  # empty
    [0, 0, 0, 0, 0, 0, 0],  # empty
    [0, 1, 3, 0, 0, 0, 0],  # b, c
    [0, 0, 0, 0, 1, 0, 0],  # x: zero observed length without a root length
    [0, 0, 0, 0, 0, 2, 0],  # y
    [1, 1, 0, 0, 0, 0, 5],  # a, b, h
])


def _skbio(counts: np.ndarray, taxa: list[str], tree: TreeNode) -> np.ndarray:
    return beta_diversity("unweighted_unifrac", counts, taxa=taxa, tree=tree).data


def _random_tree(rng: np.random.Generator, n_tips: int) -> str:
    """Newick of a random rooted binary tree; some lengths 0, a few negative (skbio takes them)."""
    nodes = [f"t{i}" for i in range(n_tips)]
    while len(nodes) > 1:
        i, j = sorted(rng.choice(len(nodes), size=2, replace=False))
        lengths = rng.choice([0.0, -0.05, 0.3, 1.0], size=2, p=[0.1, 0.02, 0.48, 0.4])
        lengths = lengths * rng.uniform(0.5, 1.5, size=2)
        merged = f"({nodes[i]}:{lengths[0]:.4f},{nodes[j]}:{lengths[1]:.4f})"
        nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [merged]
    return nodes[0] + ";"


@pytest.mark.parametrize("newick", EDGE_TREES)
def test_edge_cases_match_skbio(newick):
    tree = TreeNode.read(io.StringIO(newick))
    got = unweighted_unifrac(sp.csr_matrix(EDGE_COUNTS), EDGE_TAXA, tree)
    np.testing.assert_allclose(got, _skbio(EDGE_COUNTS, EDGE_TAXA, tree), rtol=0, atol=1e-10)
    assert np.array_equal(got, got.T) and np.all(np.diag(got) == 0)
    assert got[1, 2] == 0 and got[0, 1] == 1  # two empty samples; empty vs not empty
    assert got[4, 5] == 0  # x vs y: no observed length but the shared root's


def test_small_case_by_hand():
    tree = TreeNode.read(io.StringIO("((a:1,b:2):3,c:4)root;"))
    counts = sp.csr_matrix(np.array([[5, 0, 0], [0, 1, 0], [2, 0, 7], [3, 0, 0]]))
    got = unweighted_unifrac(counts, ["a", "b", "c"], tree)
    # {a} vs {b}: unique 1 + 2 of observed 1 + 2 + 3; {a} vs {a, c}: 4 of 1 + 3 + 4.
    np.testing.assert_allclose(got[0, 1:], [3 / 6, 4 / 8, 0.0], rtol=0, atol=1e-15)


# All sparse; the default; dense but for one-sample branches.
@pytest.mark.parametrize("rare_share", [1, 16, 10**9])
def test_random_tree_and_table_match_skbio(rare_share):
    rng = np.random.default_rng(7)
    tree = TreeNode.read(io.StringIO(_random_tree(rng, 220)))
    taxa = [f"t{i}" for i in rng.permutation(220)[:200]]  # 20 tree tips absent from the table
    counts = sp.random(60, 200, density=0.08, random_state=3, format="csr",
                       data_rvs=lambda k: rng.integers(1, 50, size=k)).toarray()
    counts[5] = 0
    counts[6, :] = counts[7, :]  # identical samples
    branches = index_tree(tree, taxa)
    bits = branch_presence(sp.csr_matrix(counts), branches)
    got = distances_from_shared(shared_length(bits, branches.length, 60, rare_share))
    np.testing.assert_allclose(got, _skbio(counts, taxa, tree), rtol=0, atol=1e-10)
    assert np.array_equal(got, got.T) and np.all(np.diag(got) == 0)
    assert abs(got[6, 7]) < 1e-12 and got[5, 0] == 1


def test_real_ibd_subset_matches_skbio():
    src = shared_dataset("ibd-2538")
    table = read_table(src / "table.biom")
    tree = read_tree(src / "tree.nwk")
    tips = match_tree_tips(tree, table.feature_ids, table.feature_ids, "tree.nwk")
    sub = sp.csr_matrix(table.counts[::4][:100])  # 100 samples: skbio takes about 1.5 s
    seen = np.asarray((sub > 0).sum(axis=0)).ravel() > 0
    keep = [j for j, name in enumerate(tips) if name is not None and seen[j]]
    counts, names = sp.csr_matrix(sub[:, keep]), [tips[j] for j in keep]
    got = unweighted_unifrac(counts, names, tree)
    expected = _skbio(counts.toarray(), names, tree)
    assert got.shape == (100, 100) and len(names) > 3000 and 0.3 < np.median(got) < 1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_no_samples_gives_an_empty_matrix():
    tree = TreeNode.read(io.StringIO(EDGE_TREES[0]))
    assert unweighted_unifrac(sp.csr_matrix((0, 7)), EDGE_TAXA, tree).shape == (0, 0)


@pytest.mark.parametrize("newick, taxa, message", [
    ("(a:1,b:1,c:1);", ["a"], "UniFrac needs a rooted tree; its root has 3 children"),
    ("((a:1,b):1,c:1);", ["a"], r"1 \(first 1: b\) non-root nodes of the tree have no branch"),
    ("((a:1,a:1):1,c:1);", ["c"], r"1 \(first 1: a\) tip names occur more than once"),
    ("((a:1,b:1):1,c:1);", ["a", "q", "r"],
     r"2 \(first 2: q, r\) ASVs in the table are not tips in the tree"),
    ("((a:1,b:1):1,c:1);", ["a", "a"], r"1 \(first 1: a\) tree tips are named by more than one"),
])
def test_bad_trees_are_named(newick, taxa, message):
    tree = TreeNode.read(io.StringIO(newick))
    with pytest.raises(InputError, match=message):
        unweighted_unifrac(sp.csr_matrix(np.ones((2, len(taxa)))), taxa, tree)


def test_negative_counts_are_refused():
    tree = TreeNode.read(io.StringIO("((a:1,b:1):1,c:1);"))
    with pytest.raises(InputError, match="UniFrac needs non-negative counts; the table has 1"):
        unweighted_unifrac(sp.csr_matrix(np.array([[1, -2], [1, 1]])), ["a", "b"], tree)
