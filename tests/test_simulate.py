"""The simulated dataset: deterministic, microbiome-shaped, readable, with a learnable target."""

from __future__ import annotations

import json

import biom
import numpy as np
import pandas as pd
import pytest
from skbio import TreeNode
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from aam.cli.simulate import main
from aam.data.simulate import SimulationConfig, simulate, write_simulation
from aam.errors import InputError


@pytest.fixture(scope="module")
def default_sim():
    return simulate(SimulationConfig())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    write_simulation(simulate(SimulationConfig(n_samples=40, n_asvs=60, seed=5)), out)
    return out


def _clade_z(counts, clade):
    """Standardised log relative abundance of a clade, as truth.json defines it."""
    log_abund = np.log((counts[:, clade["asv_index"]].sum(1) + 0.5) / counts.sum(1))
    return (log_abund - clade["log_abundance_mean"]) / clade["log_abundance_sd"]


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    cfg = SimulationConfig(n_samples=20, n_asvs=30, seed=7)
    for name in ("a", "b"):
        write_simulation(simulate(cfg), tmp_path / name)
    write_simulation(simulate(SimulationConfig(n_samples=20, n_asvs=30, seed=8)), tmp_path / "c")
    for name in ("metadata.tsv", "tree.nwk", "truth.json", "taxonomy.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    table_a, table_b = (biom.load_table(str(tmp_path / n / "table.biom")) for n in "ab")
    assert table_a == table_b
    assert not np.array_equal(table_a.matrix_data.toarray(),
                              biom.load_table(str(tmp_path / "c" / "table.biom"))
                              .matrix_data.toarray())


def test_sizes_and_microbiome_like_sparsity(default_sim):
    counts = default_sim.counts
    assert counts.shape == (200, 300)
    assert counts.dtype == np.int64 and (counts >= 0).all()
    assert (counts.sum(0) > 0).all(), "every ASV must be observed at least once"
    observed = (counts > 0).sum(1)
    assert 30 <= np.median(observed) <= 150
    assert 1000 < np.median(counts.sum(1)) < 12000
    assert list(default_sim.metadata.index) == default_sim.sample_ids
    assert default_sim.metadata["subject"].nunique() == 50


def test_sequences_are_unique_acgt_of_amplicon_length(default_sim):
    seqs = default_sim.sequences
    assert len(set(seqs)) == len(seqs) == 300
    assert all(set(s) <= set("ACGT") and 100 <= len(s) <= 150 for s in seqs)
    short = simulate(SimulationConfig(n_samples=8, n_asvs=16, seq_length=100))
    assert {len(s) for s in short.sequences} == {100}


def test_sequences_within_a_clade_are_closer_than_random_pairs(default_sim):
    seqs = np.array([list(s) for s in default_sim.sequences])
    rng = np.random.default_rng(0)
    random_pairs = rng.integers(0, len(seqs), (200, 2))
    random_dist = np.mean([(seqs[i] != seqs[j]).mean() for i, j in random_pairs])
    for clade in default_sim.truth["clades"]:
        members = seqs[clade["asv_index"]]
        within = np.mean([(members[0] != m).mean() for m in members[1:]])
        assert within < 0.5 * random_dist


def test_outputs_readable_and_tree_tips_equal_table_asvs(written):
    table = biom.load_table(str(written / "table.biom"))
    tree = TreeNode.read(str(written / "tree.nwk"))
    tips = {tip.name for tip in tree.tips()}
    assert tips == set(table.ids(axis="observation"))
    assert len(tree.children) == 2, "the tree must be rooted (binary root)"
    assert all(node.length is not None and node.length >= 0 for node in tree.non_tips())
    metadata = pd.read_csv(written / "metadata.tsv", sep="\t", dtype=str)
    assert list(metadata.columns) == ["sample_id", "target", "category", "subject", "batch"]
    assert list(metadata["sample_id"]) == list(table.ids(axis="sample"))
    assert not metadata["category"].str.contains("_").any()
    assert (metadata.groupby("subject")["category"].nunique() == 1).all()
    truth = json.loads((written / "truth.json").read_text())
    assert truth["sizes"] == {"n_samples": 40, "n_asvs": 60, "n_subjects": 10}
    assert set(truth["noise_free_target"]) == set(metadata["sample_id"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_follows_clade_abundance_as_truth_states(seed):
    data = simulate(SimulationConfig(seed=seed))
    truth, target = data.truth, data.metadata["target"].to_numpy()
    z = np.stack([_clade_z(data.counts, clade) for clade in truth["clades"]], 1)  # [N, C]
    onehot = pd.get_dummies(data.metadata["category"]).to_numpy(float)  # [N, K]
    design = np.hstack([z, onehot, onehot[:, 1:] * z[:, :1]])
    fitted = np.linalg.lstsq(design, target, rcond=None)[0]
    stated = [clade["coefficient"] for clade in truth["clades"]]
    stated[0] += truth["interaction"]["site-a"]  # z_0's column is site-a's slope
    assert np.allclose(fitted[: len(stated)], stated, atol=0.15), (fitted, stated)
    assert (np.sign(fitted[1:len(stated)]) == np.sign(stated[1:])).all()


def test_clade_slope_differs_by_category_as_truth_says(default_sim):
    truth = default_sim.truth
    z0 = _clade_z(default_sim.counts, truth["clades"][0])
    target = default_sim.metadata["target"].to_numpy()
    category = default_sim.metadata["category"].to_numpy()
    slopes = {cat: np.polyfit(z0[category == cat], target[category == cat], 1)[0]
              for cat in truth["interaction"]}
    low = min(truth["interaction"], key=truth["interaction"].get)
    high = max(truth["interaction"], key=truth["interaction"].get)
    expected = truth["interaction"][high] - truth["interaction"][low]
    assert expected >= 1.0, "the simulator must state a clear interaction"
    assert slopes[high] - slopes[low] > 0.5 * expected


def test_random_forest_learns_the_target_on_held_out_subjects(default_sim):
    meta = default_sim.metadata
    rel = default_sim.counts / default_sim.counts.sum(1, keepdims=True)
    features = np.hstack([rel, pd.get_dummies(meta["category"]).to_numpy(float)])
    forest = RandomForestRegressor(25, max_features=0.3, random_state=0, n_jobs=1)
    predicted = cross_val_predict(forest, features, meta["target"], groups=meta["subject"],
                                  cv=GroupKFold(3))
    assert r2_score(meta["target"], predicted) > 0.3


def test_invalid_sizes_are_input_errors():
    with pytest.raises(InputError, match=r"n_asvs \(--asvs\) must be >= 16, got 5"):
        SimulationConfig(n_asvs=5)
    with pytest.raises(InputError, match=r"seq_length \(--seq-length\) must be 100-150, got 90"):
        SimulationConfig(seq_length=90)


def test_cli_writes_the_five_files_and_rejects_bad_sizes(tmp_path, capsys):
    assert main(["--output-dir", str(tmp_path), "--samples", "12", "--asvs", "20"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "metadata.tsv", "table.biom", "taxonomy.tsv", "tree.nwk", "truth.json"]
    assert main(["--output-dir", str(tmp_path / "x"), "--samples", "3"]) == 2
    assert "n_samples (--samples) must be >= 8, got 3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_taxonomy_names_the_signal_clades_and_background_subtrees(written):
    """taxonomy.tsv: one row per table ASV (same IDs, same order); the signal clades of
    truth.json are p__signal; f__clade-<c>; the rest are background subtrees of the tree, each
    a clade without signal ASVs (its tips' lowest common ancestor holds no other tip)."""
    from aam.data.taxonomy import read_taxonomy

    table = biom.load_table(str(written / "table.biom"))
    taxa = read_taxonomy(written / "taxonomy.tsv")
    assert list(taxa.index) == list(table.ids(axis="observation"))
    truth = json.loads((written / "truth.json").read_text())
    names = list(taxa.index)
    for c, clade in enumerate(truth["clades"]):
        members = {names[i] for i in clade["asv_index"]}
        assert clade["name"] == f"clade-{c}"
        assert set(taxa[taxa == f"k__Simulated; p__signal; f__clade-{c}"].index) == members
    background = taxa[~taxa.str.contains("p__signal")]
    assert len(background) == len(names) - sum(c["n_asvs"] for c in truth["clades"])
    assert background.str.fullmatch(r"k__Simulated; p__background; f__background-\d+").all()
    tree = TreeNode.read(str(written / "tree.nwk"))
    for taxon, group in background.groupby(background):
        tips = set(group.index)
        node = tree.lca(list(tips))
        under = {node.name} if node.is_tip() else {t.name for t in node.tips()}
        assert under == tips, taxon  # a whole subtree
        assert len(tips) <= max(4, len(names) // 8)


def test_prepare_reads_the_simulated_taxonomy(written, tmp_path):
    from aam.cli.__main__ import main as aam_main

    out = tmp_path / "prepared"
    assert aam_main(["prepare", "--table", str(written / "table.biom"), "--metadata",
                     str(written / "metadata.tsv"), "--metadata-column", "target",
                     "--taxonomy", str(written / "taxonomy.tsv"), "--output-dir", str(out)]) == 0
    info = json.loads((out / "prepare.json").read_text())["taxonomy"]
    assert info["n_assigned"] == info["n_asvs"] == 60
    stored = pd.read_csv(out / "taxonomy.tsv", sep="\t")
    assert stored["Taxon"].str.contains("p__signal; f__clade-0").sum() == len(
        json.loads((written / "truth.json").read_text())["clades"][0]["asv_index"])
