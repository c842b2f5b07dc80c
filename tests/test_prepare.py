"""`aam prepare` on the tiny fixtures: outputs, drop counts with reasons, and each bad input."""

from __future__ import annotations

import dataclasses
import os
import json
from pathlib import Path

import numpy as np
import pytest

from aam.cli.prepare import main
from aam.data.biom_io import read_table
from aam.data.prepare import PrepareConfig, prepare
from aam.data.prepared import LEGACY_DISTANCES_FILE, load_prepared, read_sample_list
from aam.data.distance_io import read_distance_matrix
from aam.errors import InputError

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "tiny-expected.json").read_text())
KEPT = ["1234.10", "1234.20", "1234.3", "1234.4", "1234.50", "1234.7", "1234.100"]


def config(tmp_path, **changes) -> PrepareConfig:
    base = PrepareConfig(table=str(DATA / "tiny-table.biom"),
                         metadata=str(DATA / "tiny-metadata.tsv"), target_column="ph",
                         output_dir=str(tmp_path / "out"), tree=str(DATA / "tiny-tree.nwk"),
                         categorical_columns=("body_site", "sex"), min_depth=10)
    return dataclasses.replace(base, **changes)


def test_prepare_writes_contract_files_and_counts_every_drop(tmp_path):
    info = prepare(config(tmp_path))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "distances.h5", "metadata.tsv", "prepare.json", "table.biom"]
    assert info["dropped_samples"] == {
        "no metadata": {"count": 1, "first": ["1234.8"]},
        "missing target": {"count": 1, "first": ["1234.6"]},
        "below min depth": {"count": 1, "first": ["1234.9"]}}
    assert {k: v["count"] for k, v in info["dropped_asvs"].items()} == {
        "ambiguous bases": 1, "not in tree": 1}
    assert (info["n_samples"], info["n_asvs"]) == (7, 10)
    assert info["metadata_samples_not_in_table"] == 1
    assert json.loads((tmp_path / "out" / "prepare.json").read_text()) == info


def test_load_prepared_round_trips_counts_metadata_and_distances(tmp_path):
    prepare(config(tmp_path))
    data = load_prepared(tmp_path / "out")
    assert data.sample_ids == KEPT
    assert EXPECTED["ambiguous_asv"] not in data.sequences
    assert EXPECTED["not_in_tree_asv"] not in data.sequences
    table = read_table(DATA / "tiny-table.biom")
    rows = [table.sample_ids.index(s) for s in KEPT]
    cols = [table.feature_ids.index(s) for s in data.sequences]
    np.testing.assert_array_equal(data.counts.toarray(), table.counts[rows][:, cols].toarray())
    assert list(data.metadata.columns) == ["ph", "temperature", "body_site", "sex"]
    assert data.metadata.loc["1234.4", "ph"] == "6.3" and data.metadata["sex"].isna().sum() == 1
    ids, matrix = read_distance_matrix(DATA / "tiny-unifrac.tsv")
    pos = [ids.index(s) for s in KEPT]
    np.testing.assert_allclose(data.distances, matrix[np.ix_(pos, pos)], atol=1e-6)
    assert data.distances.dtype == np.float32


def test_a_folder_an_earlier_aam_prepared_with_unifrac_h5_still_loads(tmp_path):
    prepare(config(tmp_path))
    expected = load_prepared(tmp_path / "out").distances
    (tmp_path / "out" / "distances.h5").rename(tmp_path / "out" / LEGACY_DISTANCES_FILE)
    np.testing.assert_array_equal(load_prepared(tmp_path / "out").distances, expected)


def test_md5_ids_with_rep_seqs_and_hash_tree_give_the_same_data(tmp_path):
    prepare(config(tmp_path))
    prepare(config(tmp_path, table=str(DATA / "tiny-table-md5.json.biom"),
                   rep_seqs=str(DATA / "tiny-rep-seqs.qza"), tree=str(DATA / "tiny-tree-md5.nwk"),
                   metadata=str(DATA / "tiny-metadata-q2.tsv"), output_dir=str(tmp_path / "md5")))
    plain, hashed = load_prepared(tmp_path / "out"), load_prepared(tmp_path / "md5")
    assert hashed.sequences == plain.sequences and hashed.sample_ids == plain.sample_ids
    np.testing.assert_allclose(hashed.distances, plain.distances)


def test_qza_table_and_precomputed_matrix(tmp_path):
    info = prepare(config(tmp_path, table=str(DATA / "tiny-table.qza"), tree=None,
                          distance_matrix=str(DATA / "tiny-unifrac.tsv")))
    assert "not in tree" not in info["dropped_asvs"] and info["n_asvs"] == 11
    assert load_prepared(tmp_path / "out").distances.shape == (7, 7)


def test_rarefaction_is_seeded_and_drops_shallow_samples(tmp_path):
    info = prepare(config(tmp_path, rarefy_depth=110, seed=3, tree=None))
    prepare(config(tmp_path, rarefy_depth=110, seed=3, tree=None,
                   output_dir=str(tmp_path / "again")))
    first, second = load_prepared(tmp_path / "out"), load_prepared(tmp_path / "again")
    assert np.all(np.asarray(first.counts.sum(axis=1)).ravel() == 110)
    assert (first.counts != second.counts).nnz == 0
    assert "1234.10" in info["dropped_samples"]["below rarefy depth"]["first"]  # 101 reads
    assert "1234.10" not in first.sample_ids and info["n_samples"] == len(first.sample_ids)
    assert not (tmp_path / "out" / "distances.h5").exists()


def _bad_files(tmp_path) -> dict[str, str]:
    (tmp_path / "no_overlap.tsv").write_text("sample_id\tph\tbody_site\tsex\nX1\t1\ta\tf\n"
                                             "X2\t2\tb\tm\n")
    (tmp_path / "no_tips.nwk").write_text("(a:1,b:1);\n")
    ids, matrix = read_distance_matrix(DATA / "tiny-unifrac.tsv")
    np.save(tmp_path / "partial.npy", matrix[:-1, :-1])
    (tmp_path / "partial.ids.txt").write_text("\n".join(ids[:-1]))
    return {name: str(tmp_path / name) for name in ("no_overlap.tsv", "no_tips.nwk", "partial.npy")}


@pytest.mark.parametrize("changes, message", [
    ({"metadata": "no_overlap.tsv"}, r"No sample of .* is in .*: table IDs like 1234.10, "
                                     r"1234.20, 1234.3; metadata IDs like X1, X2"),
    ({"target_column": "pH"}, r"target column 'pH' not found in .*Available columns: ph, "),
    ({"target_column": "temperature"}, r"1234.7='warm'.*--task classification"),
    ({"categorical_columns": ("site",)}, r"categorical column 'site' not found"),
    ({"table": str(DATA / "tiny-table-md5.json.biom"), "tree": None}, r"Pass --rep-seqs"),
    ({"min_depth": 10**6}, r"--min-depth emptied the table"),
    ({"tree": "no_tips.nwk"}, r"None of the 11 table features is a tip of the tree"),
    ({"tree": None, "distance_matrix": "partial.npy"},
     r"1 \(first 1: 1234.100\) samples of the table are not in the distance matrix"),
])
def test_bad_inputs_raise_and_leave_no_output(tmp_path, changes, message):
    files = _bad_files(tmp_path)
    changes = {key: files.get(value, value) if isinstance(value, str) else value
               for key, value in changes.items()}
    with pytest.raises(InputError, match=message):
        prepare(config(tmp_path, **changes))
    assert not (tmp_path / "out").exists()


def test_all_missing_target_is_an_error(tmp_path):
    meta = tmp_path / "m.tsv"
    meta.write_text("sample_id\tph\n" + "".join(f"{s}\tNA\n" for s in KEPT))
    with pytest.raises(InputError, match="Target 'ph' .* is empty or missing for all 7"):
        prepare(config(tmp_path, metadata=str(meta), categorical_columns=()))


def test_failed_rerun_keeps_no_half_written_file(tmp_path):
    prepare(config(tmp_path))
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    with pytest.raises(InputError):
        prepare(config(tmp_path, target_column="temperature"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_subset_names_missing_ids_and_the_list(tmp_path):
    prepare(config(tmp_path))
    data = load_prepared(tmp_path / "out")
    sub = data.subset(["1234.3", "1234.10"])
    assert sub.sample_ids == ["1234.3", "1234.10"] and sub.distances[0, 1] == data.distances[2, 0]
    with pytest.raises(InputError, match=r"^2 samples in train_samples.txt are not in the prepared "
                                         r"table \(first 2: 1234.1, 1234.9\)\. Regenerate"):
        data.subset(["1234.1", "1234.3", "1234.9"], source="train_samples.txt")
    (tmp_path / "list.txt").write_text("1234.10\n\n1234.3\n")
    assert read_sample_list(tmp_path / "list.txt") == ["1234.10", "1234.3"]


def test_cli_success_and_one_line_error(tmp_path, capsys):
    args = ["--table", str(DATA / "tiny-table.biom"), "--metadata", str(DATA / "tiny-metadata.tsv"),
            "--tree", str(DATA / "tiny-tree.nwk"), "--min-depth", "10",
            "--categorical-columns", "body_site,sex", "--output-dir", str(tmp_path / "cli")]
    assert main(args + ["--metadata-column", "ph"]) == 0
    assert json.loads((tmp_path / "cli" / "prepare.json").read_text())["categorical_columns"] == [
        "body_site", "sex"]
    assert main(args + ["--metadata-column", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("aam prepare: error: target column 'nope' not found")


def test_cli_tree_and_matrix_are_exclusive(capsys, tmp_path):
    code = main(["--table", "t", "--metadata", "m", "--metadata-column", "c", "--output-dir",
                 str(tmp_path / "o"), "--tree", "a.nwk", "--distance-matrix", "d.npy"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("aam prepare: error: Pass either --tree or "
                                               "--distance-matrix, not both.")
    assert not (tmp_path / "o").exists()


def test_outputs_are_readable_like_plain_files(tmp_path):
    prepare(config(tmp_path))
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert set(modes.values()) == {0o666 & ~mask}
