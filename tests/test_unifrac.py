"""UniFrac: skbio-backed distances checked against a hand-written implementation; matrices."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from skbio import TreeNode

from aam.data.biom_io import read_table
from aam.data.distance_io import align_distance_matrix, read_distance_matrix
from aam.data.unifrac import match_tree_tips, read_tree, unweighted_unifrac
from aam.errors import InputError

DATA = Path(__file__).parent / "data"


def _by_hand(counts: np.ndarray, tips: list[str], tree: TreeNode) -> np.ndarray:
    """Unweighted UniFrac from its definition: unique branch length / observed branch length."""
    column = {name: j for j, name in enumerate(tips)}
    branches = []  # (length, presence per sample)
    for node in tree.postorder(include_self=False):
        below = [column[t.name] for t in node.tips(include_self=True) if t.name in column]
        branches.append((node.length, (counts[:, below] > 0).any(axis=1)))
    n = counts.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            unique = sum(length * (p[i] != p[j]) for length, p in branches)
            observed = sum(length * (p[i] or p[j]) for length, p in branches)
            out[i, j] = unique / observed
    return out


def test_unifrac_matches_the_definition_on_the_fixture():
    table = read_table(DATA / "tiny-table.biom")
    tree = read_tree(DATA / "tiny-tree.nwk")
    tips = match_tree_tips(tree, table.feature_ids, table.feature_ids, "tiny-tree.nwk")
    keep = [j for j, name in enumerate(tips) if name is not None]
    counts = table.counts[:, keep]
    got = unweighted_unifrac(counts, [tips[j] for j in keep], tree)
    np.testing.assert_allclose(got, _by_hand(counts.toarray(), [tips[j] for j in keep], tree),
                               atol=1e-12)
    assert got.shape == (10, 10) and 0 < got[0, 1] < 1


def test_md5_tree_tips_match_table_ids():
    table = read_table(DATA / "tiny-table-md5.json.biom")
    tree = read_tree(DATA / "tiny-tree-md5.nwk")
    tips = match_tree_tips(tree, table.feature_ids, ["X"] * 12, "tiny-tree-md5.nwk")
    assert sum(t is None for t in tips) == 1 and tips[0] == table.feature_ids[0]


def test_tree_covering_no_feature_is_an_error():
    tree = read_tree(DATA / "tiny-tree.nwk")
    with pytest.raises(InputError, match="None of the 2 table features is a tip of the tree"):
        match_tree_tips(tree, ["AAAA", "CCCC"], ["AAAA", "CCCC"], "tiny-tree.nwk")


def test_unrooted_tree_is_rooted_at_midpoint(tmp_path):
    path = tmp_path / "t.nwk"
    path.write_text("(a:1,b:2,(c:1,d:1):0.5);\n")
    tree = read_tree(path)
    assert len(tree.children) == 2 and {t.name for t in tree.tips()} == set("abcd")


def test_missing_tree_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="tree file not found: .*absent.nwk"):
        read_tree(tmp_path / "absent.nwk")


def test_matrix_formats_agree(tmp_path):
    ids, matrix = read_distance_matrix(DATA / "tiny-unifrac.tsv")
    np.save(tmp_path / "d.npy", matrix)
    (tmp_path / "d.ids.txt").write_text("\n".join(ids) + "\n")
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["ids"] = np.array(ids, dtype=object).astype(h5py.string_dtype())
        handle["matrix"] = matrix
    for other in ("d.npy", "d.h5"):
        other_ids, other_matrix = read_distance_matrix(tmp_path / other)
        assert other_ids == ids and ids[0] == "1234.10"
        np.testing.assert_allclose(other_matrix, matrix)


def test_matrix_is_reordered_and_subset_to_the_samples():
    ids, matrix = read_distance_matrix(DATA / "tiny-unifrac.tsv")
    got = align_distance_matrix(ids, matrix, [ids[3], ids[0]], "m")
    np.testing.assert_allclose(got, [[0, matrix[3, 0]], [matrix[0, 3], 0]])


def test_matrix_missing_samples_are_named():
    ids, matrix = read_distance_matrix(DATA / "tiny-unifrac.tsv")
    with pytest.raises(InputError, match=r"2 \(first 2: S1, S2\) samples of the table are not in "
                                         r"the distance matrix tiny-unifrac.tsv"):
        align_distance_matrix(ids, matrix, ["S1", ids[0], "S2"], "tiny-unifrac.tsv")


def test_matrix_ids_that_disagree_with_the_shape(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((3, 3)))
    (tmp_path / "d.ids.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match=r"shape \(3, 3\) does not match its 2 IDs"):
        read_distance_matrix(tmp_path / "d.npy")


def test_tree_from_phylogeny_qza(tmp_path):
    import zipfile

    newick = (DATA / "tiny-tree.nwk").read_text()
    with zipfile.ZipFile(tmp_path / "tree.qza", "w") as archive:
        archive.writestr("abc/metadata.yaml", "uuid: abc\ntype: Phylogeny[Rooted]\n")
        archive.writestr("abc/data/tree.nwk", newick)
    from_qza = read_tree(tmp_path / "tree.qza")
    assert from_qza.compare_rfd(TreeNode.read(io.StringIO(newick))) == 0
    assert sorted(t.name for t in from_qza.tips()) == sorted(
        t.name for t in read_tree(DATA / "tiny-tree.nwk").tips())
