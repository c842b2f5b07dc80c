"""Beta-diversity metrics for pretraining: each one equals scipy / scikit-bio on real data, and
`aam prepare --beta-metric` records it and refuses a tree metric without a tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from aam.cli.prepare import main
from aam.data.beta import BETA_METRICS, TREE_FREE, beta_distances
from aam.data.biom_io import read_table
from aam.data.prepared import load_prepared
from conftest import shared_dataset


@pytest.fixture(scope="module")
def sleep_apnea():
    src = shared_dataset("sleep-apnea")
    table = read_table(src / "table.biom")
    keep = np.asarray(table.counts.sum(axis=1)).ravel() > 0
    return src, table.counts[np.flatnonzero(keep)]


def _prepare(src, out, metric: str, extra=()) -> int:
    return main(["--table", str(src / "table.biom"), "--metadata", str(src / "metadata.tsv"),
                 "--metadata-column", "age", "--beta-metric", metric, "--output-dir", str(out),
                 *extra])


def test_prepare_braycurtis_without_a_tree_equals_scipy(sleep_apnea, tmp_path):
    src, _ = sleep_apnea
    assert _prepare(src, tmp_path, "braycurtis") == 0
    data = load_prepared(tmp_path)
    assert json.loads((tmp_path / "prepare.json").read_text())["beta_metric"] == "braycurtis"
    dense = data.counts.toarray().astype(np.float64)
    expected = squareform(pdist(dense, "braycurtis"))
    assert data.distances.shape == (184, 184)
    np.testing.assert_allclose(data.distances, expected, atol=1e-6, rtol=0)


def test_jaccard_equals_scikit_bio(sleep_apnea):
    from skbio.diversity import beta_diversity

    _, counts = sleep_apnea
    dense = counts.toarray()
    expected = beta_diversity("jaccard", dense > 0).data
    np.testing.assert_allclose(beta_distances("jaccard", counts), expected, atol=1e-12)


def test_aitchison_is_scikit_bio_rclr_then_euclidean(sleep_apnea):
    from skbio.stats.composition import rclr

    _, counts = sleep_apnea
    clr = np.nan_to_num(rclr(counts.toarray().astype(np.float64)), nan=0.0)
    expected = squareform(pdist(clr, "euclidean"))
    got = beta_distances("aitchison", counts)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert got[0, 1] > 0 and np.all(np.diag(got) == 0)


def test_weighted_unifrac_equals_scikit_bio_normalized():
    from skbio import TreeNode
    from skbio.diversity import beta_diversity

    src = shared_dataset("moving-pictures")
    table = read_table(src / "table.biom")
    tree = TreeNode.read(str(src / "rooted-tree.nwk"))
    counts = table.counts[:12]
    dense = counts.toarray()
    keep = dense.sum(axis=0) > 0
    tips = [t for t, k in zip(table.feature_ids, keep) if k]
    expected = beta_diversity("weighted_unifrac", dense[:, keep], taxa=tips, tree=tree,
                              normalized=True).data
    got = beta_distances("weighted-unifrac", counts[:, np.flatnonzero(keep)], tips, tree)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert 0 < got[0, 1] <= 1


def test_empty_samples_are_at_distance_zero():
    counts = np.array([[0, 0, 0], [0, 0, 0], [1, 2, 0]])
    for name in TREE_FREE:
        dist = beta_distances(name, counts)
        assert dist[0, 1] == 0 and dist[0, 2] > 0, name


def test_tree_metric_without_tree_names_the_tree_free_ones(sleep_apnea, tmp_path, capsys):
    src, _ = sleep_apnea
    assert _prepare(src, tmp_path / "out", "weighted-unifrac") == 2
    err = capsys.readouterr().err
    assert "needs a phylogenetic tree" in err and "braycurtis, jaccard, aitchison" in err
    assert not (tmp_path / "out").exists()
    assert set(BETA_METRICS) == {"unweighted-unifrac", "weighted-unifrac", *TREE_FREE}
