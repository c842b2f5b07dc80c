"""Acceptance: `aam prepare` on the real shared datasets (moving-pictures; ibd-2538 is slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aam.cli.prepare import main
from aam.data.biom_io import read_table
from aam.data.metadata import read_metadata
from aam.data.prepared import load_prepared
from conftest import shared_dataset


@pytest.fixture(scope="session")
def moving_pictures(tmp_path_factory):
    src = shared_dataset("moving-pictures")
    out = tmp_path_factory.mktemp("mp")
    code = main(["--table", str(src / "table.biom"), "--rep-seqs", str(src / "rep-seqs.fasta"),
                 "--metadata", str(src / "sample-metadata.tsv"),
                 "--metadata-column", "days-since-experiment-start",
                 "--tree", str(src / "rooted-tree.nwk"),
                 "--categorical-columns", "body-site,subject", "--output-dir", str(out)])
    return code, src, out


@pytest.fixture(scope="session")
def ibd(tmp_path_factory):
    src = shared_dataset("ibd-2538")
    out = tmp_path_factory.mktemp("ibd")
    code = main(["--table", str(src / "table.biom"), "--metadata", str(src / "sample-metadata.tsv"),
                 "--metadata-column", "timepoint", "--tree", str(src / "tree.nwk"),
                 "--min-depth", "1000", "--categorical-columns", "ibd,sex",
                 "--output-dir", str(out)])
    return code, src, out


def test_moving_pictures_hash_ids_become_sequences(moving_pictures):
    code, src, out = moving_pictures
    assert code == 0
    data = load_prepared(out)
    assert (len(data.sample_ids), len(data.sequences)) == (34, 770)
    assert all(len(s) == 120 and set(s) <= set("ACGT") for s in data.sequences)
    assert data.info["dropped_samples"] == {} and data.info["dropped_asvs"] == {}
    assert data.metadata.loc["L1S8", "body-site"] == "gut"  # '#q2:types' row skipped
    assert data.distances.shape == (34, 34) and np.allclose(data.distances, data.distances.T)
    assert 0 < data.distances[0, 1] < 1 and np.all(np.diag(data.distances) == 0)


@pytest.mark.slow
def test_ibd_prepare_counts_every_drop_with_its_reason(ibd):
    code, src, out = ibd
    assert code == 0
    info = json.loads((out / "prepare.json").read_text())
    table = read_table(src / "table.biom")
    depth = dict(zip(table.sample_ids, np.asarray(table.counts.sum(axis=1)).ravel()))
    shallow = sum(d < 1000 for d in depth.values())
    assert info["dropped_samples"]["below min depth"]["count"] == shallow == 21
    dropped = sum(entry["count"] for entry in info["dropped_samples"].values())
    assert info["n_samples"] + dropped == 470
    assert info["dropped_asvs"]["not in tree"]["count"] == 10099 - 9970
    assert info["n_asvs"] + sum(e["count"] for e in info["dropped_asvs"].values()) == 10099
    assert info["max_bp"] == 100 and info["metadata_samples_not_in_table"] == 646 - 470


@pytest.mark.slow
def test_ibd_prepared_data_loads_fast_with_string_ids(ibd):
    import time

    code, src, out = ibd
    start = time.perf_counter()
    data = load_prepared(out)
    assert time.perf_counter() - start < 2.0
    assert "2538.1002622" in data.sample_ids and data.distances.shape == (449, 449)
    original = read_metadata(src / "sample-metadata.tsv")
    assert list(data.metadata.columns) == list(original.columns)
    assert data.metadata.loc["2538.1002622", "ibd"] == original.loc["2538.1002622", "ibd"]
