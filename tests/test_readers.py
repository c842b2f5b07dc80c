"""Readers: BIOM (HDF5/JSON/.qza), FASTA and hash IDs, metadata TSV, rarefaction."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from aam.data.biom_io import read_table
from aam.data.fasta import read_fasta, resolve_sequences
from aam.data.filtering import rarefy
from aam.data.metadata import is_missing, read_metadata, usable_target
from aam.errors import InputError

DATA = Path(__file__).parent / "data"


def test_biom_hdf5_json_and_qza_hold_the_same_table():
    hdf5 = read_table(DATA / "tiny-table.biom")
    for other in (read_table(DATA / "tiny-table.json.biom"), read_table(DATA / "tiny-table.qza")):
        assert other.sample_ids == hdf5.sample_ids
        assert other.feature_ids == hdf5.feature_ids
        assert (other.counts != hdf5.counts).nnz == 0
    assert hdf5.counts.shape == (10, 12)
    assert hdf5.sample_ids[0] == "1234.10"  # never parsed as a float


def test_missing_table_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.biom"):
        read_table(tmp_path / "nope.biom")


@pytest.mark.parametrize("name", ["tiny-rep-seqs.fasta", "tiny-metadata.tsv", "tiny-tree.nwk"])
def test_other_files_are_not_a_table(name):
    with pytest.raises(InputError, match=f"{name} is not a BIOM table or QIIME 2 .qza artifact"):
        read_table(DATA / name)


def test_qza_of_another_type_is_rejected():
    with pytest.raises(InputError, match=r"holds no data/\*\.biom \(artifact type: FeatureData"):
        read_table(DATA / "tiny-rep-seqs.qza")


def test_fasta_and_qza_rep_seqs_agree_and_match_md5():
    plain, qza = read_fasta(DATA / "tiny-rep-seqs.fasta"), read_fasta(DATA / "tiny-rep-seqs.qza")
    assert plain == qza and len(plain) == 12
    assert all(hashlib.md5(s.encode()).hexdigest() == h for h, s in plain.items())


def test_hash_ids_map_to_uppercase_sequences_and_ambiguous_ones_drop():
    table = read_table(DATA / "tiny-table-md5.json.biom")
    reps = {k: v.lower() for k, v in read_fasta(DATA / "tiny-rep-seqs.fasta").items()}
    result = resolve_sequences(table.feature_ids, reps)
    assert result.dropped == {"ambiguous bases": [3]}
    assert result.sequences[0] == reps[table.feature_ids[0]].upper()


def test_hash_ids_without_rep_seqs_ask_for_rep_seqs():
    table = read_table(DATA / "tiny-table-md5.json.biom")
    with pytest.raises(InputError, match=r"12 \(first 5: .*\) feature IDs .* Pass --rep-seqs"):
        resolve_sequences(table.feature_ids, None)


def test_md5_mismatch_names_the_ids():
    reps = read_fasta(DATA / "tiny-rep-seqs.fasta")
    ids = list(reps)
    reps[ids[1]] = "ACGT" * 20
    with pytest.raises(InputError, match=f"1 \\(first 1: {ids[1]}\\) .* do not match the MD5"):
        resolve_sequences(ids, reps)


def test_hash_id_missing_from_rep_seqs_is_dropped_as_no_sequence():
    reps = read_fasta(DATA / "tiny-rep-seqs.fasta")
    ids = list(reps)
    del reps[ids[0]]
    assert resolve_sequences(ids, reps).dropped["no sequence"] == [0]


def test_metadata_ids_stay_strings_and_q2_types_row_is_skipped():
    plain = read_metadata(DATA / "tiny-metadata.tsv")
    q2 = read_metadata(DATA / "tiny-metadata-q2.tsv")
    assert list(plain.index[:3]) == ["1234.10", "1234.20", "1234.3"]
    pd.testing.assert_frame_equal(plain, q2)
    assert plain.loc["1234.6", "ph"] == "" and bool(is_missing(plain["sex"])["1234.4"])


@pytest.mark.parametrize("header", ["#SampleID", "sample-id", "sample_name", "id", "#Sample ID",
                                    "feature-id", "sampleid"])
def test_accepted_id_headers(tmp_path, header):
    path = tmp_path / "m.tsv"
    path.write_text(f"# a comment\n{header}\tx\n001\t1\n")
    assert list(read_metadata(path).index) == ["001"]


def test_metadata_without_id_column_lists_accepted_headers(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("subject\tph\nA\t7\n")
    with pytest.raises(InputError, match=r"m.tsv has no sample ID column: .*'subject'.*#SampleID"):
        read_metadata(path)


def test_duplicate_sample_ids_are_named(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("sample_id\tph\nS1\t7\nS2\t6\nS1\t5\n")
    with pytest.raises(InputError, match=r"1 \(first 1: S1\) sample IDs more than once"):
        read_metadata(path)


def test_non_numeric_target_names_samples_and_suggests_classification():
    meta = read_metadata(DATA / "tiny-metadata.tsv")
    with pytest.raises(InputError, match=r"1 values .*\(1234.7='warm'\).*--task classification"):
        usable_target(meta, "temperature", "regression", "tiny-metadata.tsv")
    assert usable_target(meta, "temperature", "classification", "m").all()


def test_all_missing_and_infinite_targets_are_errors():
    meta = pd.DataFrame({"t": ["", "NA", "Missing: Not provided"]}, index=["a", "b", "c"])
    with pytest.raises(InputError, match="empty or missing for all 3 table samples"):
        usable_target(meta, "t", "regression", "m.tsv")
    meta = pd.DataFrame({"t": ["1", "inf"]}, index=["a", "b"])
    with pytest.raises(InputError, match=r"infinite values for 1 \(first 1: b\)"):
        usable_target(meta, "t", "regression", "m.tsv")


def test_rarefy_is_seeded_and_gives_exact_depth():
    counts = read_table(DATA / "tiny-table.biom").counts[:8]
    a = rarefy(counts, 50, np.random.default_rng(1))
    b = rarefy(counts, 50, np.random.default_rng(1))
    c = rarefy(counts, 50, np.random.default_rng(2))
    assert np.all(np.asarray(a.sum(axis=1)).ravel() == 50)
    assert (a != b).nnz == 0 and (a != c).nnz > 0
    assert np.all((counts - a).toarray() >= 0)


def test_rarefy_rejects_shallow_samples():
    counts = sp.csr_matrix(np.array([[3.0, 1.0], [40.0, 60.0]]))
    with pytest.raises(InputError, match="1 samples have fewer than 10 reads"):
        rarefy(counts, 10, np.random.default_rng(0))
