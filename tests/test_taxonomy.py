"""--taxonomy: TSV or FeatureData[Taxonomy] .qza, hashed or sequence IDs, stored by aam prepare
and picked up by aam rf-baseline and aam explain."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from aam.cli.__main__ import main as aam_main
from aam.data.fasta import read_fasta
from aam.data.prepared import load_prepared
from aam.data.taxonomy import read_taxonomy, short_taxon
from aam.errors import InputError

DATA = Path(__file__).parent / "data"


def _taxonomy_text(ids) -> str:
    return "Feature ID\tTaxon\tConfidence\n" + "".join(
        f"{fid}\tk__Bacteria; p__Firmicutes; g__G{i}\t0.9\n" for i, fid in enumerate(ids))


def _qza(path: Path, text: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ab12/metadata.yaml", "uuid: ab12\ntype: FeatureData[Taxonomy]\n")
        archive.writestr("ab12/data/taxonomy.tsv", text)
    return path


def test_tsv_and_qza_read_the_same(tmp_path):
    text = _taxonomy_text(["a", "b"])
    (tmp_path / "t.tsv").write_text(text)
    from_tsv = read_taxonomy(tmp_path / "t.tsv")
    from_qza = read_taxonomy(_qza(tmp_path / "t.qza", text))
    assert from_tsv.to_dict() == from_qza.to_dict() == {
        "a": "k__Bacteria; p__Firmicutes; g__G0", "b": "k__Bacteria; p__Firmicutes; g__G1"}


def test_wrong_columns_are_named(tmp_path):
    (tmp_path / "t.tsv").write_text("id\tlineage\na\tx\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) Feature ID, Taxon \(found id, "):
        read_taxonomy(tmp_path / "t.tsv")


def test_short_taxon():
    assert short_taxon("k__Bacteria; p__Firmicutes; g__Blautia; s__") == "p__Firmicutes; g__Blautia"
    assert short_taxon("") == "unassigned"


@pytest.mark.parametrize("as_qza", [False, True])
def test_prepare_stores_taxonomy_by_sequence_for_rf(tmp_path, as_qza):
    """Hashed table IDs + rep-seqs + a taxonomy keyed by those hashes: stored by sequence."""
    hashes = list(read_fasta(DATA / "tiny-rep-seqs.fasta"))
    text = _taxonomy_text(hashes[:-1])  # the last feature stays unassigned
    taxonomy = tmp_path / "taxonomy.tsv"
    taxonomy.write_text(text)
    if as_qza:
        taxonomy = _qza(tmp_path / "taxonomy.qza", text)
    out = tmp_path / "prepared"
    assert aam_main(["prepare", "--table", str(DATA / "tiny-table-md5.json.biom"), "--rep-seqs",
                     str(DATA / "tiny-rep-seqs.fasta"), "--metadata",
                     str(DATA / "tiny-metadata-q2.tsv"), "--metadata-column", "ph",
                     "--taxonomy", str(taxonomy), "--output-dir", str(out)]) == 0
    stored = pd.read_csv(out / "taxonomy.tsv", sep="\t", keep_default_na=False)
    data = load_prepared(out)
    assert stored["Feature ID"].tolist() == data.sequences
    info = json.loads((out / "prepare.json").read_text())["taxonomy"]
    assert info["n_asvs"] == len(data.sequences)
    assert info["n_assigned"] == (stored["Taxon"] != "").sum() >= len(data.sequences) - 1
    fasta = read_fasta(DATA / "tiny-rep-seqs.fasta")
    seq_of = {h: str(fasta[h]).upper() for h in hashes}
    expected = {seq_of[h]: f"k__Bacteria; p__Firmicutes; g__G{i}"
                for i, h in enumerate(hashes[:-1])}
    for seq, taxon in zip(stored["Feature ID"], stored["Taxon"]):
        assert taxon == expected.get(seq, "")
    # aam rf-baseline picks the stored taxonomy up without --taxonomy
    ids = data.sample_ids
    (tmp_path / "train.txt").write_text("\n".join(ids[:6]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(ids[6:]) + "\n")
    rf = tmp_path / "rf" / "predictions.tsv"
    assert aam_main(["rf-baseline", "--data-dir", str(out), "--metadata-column", "ph",
                     "--train-samples", str(tmp_path / "train.txt"), "--val-samples",
                     str(tmp_path / "test.txt"), "--output", str(rf), "--n-estimators", "10",
                     "--n-jobs", "1"]) == 0
    importances = pd.read_csv(rf.parent / "feature_importance.tsv", sep="\t",
                              keep_default_na=False)
    assert importances["taxon"].tolist() == [expected.get(s, "") for s in importances["sequence"]]


@pytest.mark.parametrize("text, pattern", [
    ("Feature ID\tTaxon\na\tk__A\nb\tk__B\na\tk__C\n",
     r"t\.tsv lists Feature ID a more than once \(lines 2, 4\)\. Keep one row per feature\."),
    ("Feature ID\tTaxon\nacgt\tk__A\nb\tk__B\nACGT \tk__A\nb\tk__B\n",
     r"lists Feature ID acgt more than once \(lines 2, 4; 1 more IDs are repeated\)"),
    ("Feature ID\tTaxon\na\tk__A\n \tk__B\n", r"t\.tsv line 3 has an empty Feature ID"),
    ("Feature ID\tTaxon\n", r"t\.tsv has no taxonomy rows \(only a header\)"),
    ("Feature ID\tTaxon\tTaxon\na\tk\tk\n", None),  # pandas renames the second Taxon.1: fine
])
def test_duplicate_and_empty_ids_are_refused(tmp_path, text, pattern):
    (tmp_path / "t.tsv").write_text(text)
    if pattern is None:
        assert read_taxonomy(tmp_path / "t.tsv").to_dict() == {"a": "k"}
        return
    with pytest.raises(InputError, match=pattern):
        read_taxonomy(tmp_path / "t.tsv")


def test_ids_are_stripped(tmp_path):
    (tmp_path / "t.tsv").write_text("Feature ID\tTaxon\n a \tk__A\r\n")
    assert read_taxonomy(tmp_path / "t.tsv").to_dict() == {"a": "k__A"}


def test_foreign_ids_are_counted_or_refused(tmp_path, caplog):
    from aam.data.taxonomy import check_taxonomy_ids, feature_md5

    sequences = ["ACGTAC", "GGTTAA", "TTTTCC"]
    (tmp_path / "t.tsv").write_text("Feature ID\tTaxon\n" + f"{feature_md5('ACGTAC')}\tk__A\n"
                                    "ggttaa\tk__B\nOTU-7\tk__C\nghost\tk__D\n")
    taxonomy = read_taxonomy(tmp_path / "t.tsv")
    with caplog.at_level("WARNING"):
        assert check_taxonomy_ids(taxonomy, sequences, "table.biom") == 2
    assert re.search(r"2 of 4 Feature IDs in .*t\.tsv are not features of table\.biom and are "
                     r"ignored \(first: OTU-7, ghost\)", caplog.text), caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # the table's own IDs count as features
        assert check_taxonomy_ids(taxonomy, sequences, "table.biom", ["OTU-7", "ghost"]) == 4
    assert not caplog.text
    with pytest.raises(InputError, match=r"none of the 4 Feature IDs in .*t\.tsv is a feature of "
                                         r"table\.biom \(first: [0-9a-f]{20}…\)\. Use this "
                                         r"table's taxonomy"):
        check_taxonomy_ids(taxonomy, ["CCCCCC"], "table.biom")


def _prepare(tmp_path: Path, out: Path, *extra: str) -> int:
    return aam_main(["prepare", "--table", str(DATA / "tiny-table-md5.json.biom"), "--rep-seqs",
                     str(DATA / "tiny-rep-seqs.fasta"), "--metadata",
                     str(DATA / "tiny-metadata-q2.tsv"), "--metadata-column", "ph",
                     "--output-dir", str(out), *extra])


def test_prepare_refuses_a_taxonomy_of_another_table(tmp_path, capsys):
    taxonomy = tmp_path / "taxonomy.tsv"
    taxonomy.write_text(_taxonomy_text(["ghost-1", "ghost-2"]))
    assert _prepare(tmp_path, tmp_path / "out", "--taxonomy", str(taxonomy)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"aam prepare: error: none of the 2 Feature IDs in .*taxonomy\.tsv is a "
                     r"feature of .*tiny-table-md5\.json\.biom \(first: ghost-1\)", err), err
    assert not (tmp_path / "out").exists()


def test_prepare_rerun_without_taxonomy_removes_the_stored_one(tmp_path):
    hashes = list(read_fasta(DATA / "tiny-rep-seqs.fasta"))
    taxonomy = tmp_path / "taxonomy.tsv"
    taxonomy.write_text(_taxonomy_text(hashes))
    out = tmp_path / "prepared"
    assert _prepare(tmp_path, out, "--taxonomy", str(taxonomy)) == 0
    assert (out / "taxonomy.tsv").is_file()
    assert _prepare(tmp_path, out) == 0
    assert not (out / "taxonomy.tsv").exists()
    assert "taxonomy" not in json.loads((out / "prepare.json").read_text())
