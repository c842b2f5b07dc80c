"""--taxonomy: TSV or FeatureData[Taxonomy] .qza, hashed or sequence IDs, stored by aam prepare
and picked up by aam rf-baseline and aam explain."""

from __future__ import annotations

import json
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
