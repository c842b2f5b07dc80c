"""Property-based fuzzing of every reader of user files (issue 15): any byte string, or a valid
file with bytes flipped, inserted or cut, either parses to a valid object or raises the project's
InputError; never another exception and never a hang.

CI runs the ``ci`` profile of tests/conftest.py (fixed seed, 40 examples per reader);
``HYPOTHESIS_PROFILE=long`` runs 2000 per reader.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aam.config import FinetuneConfig, load_yaml
from aam.data.biom_io import FeatureTable, read_table
from aam.data.fasta import read_fasta
from aam.data.metadata import read_metadata
from aam.data.prepared import read_prepare_info
from aam.data.sample_ids import read_sample_list
from aam.data.taxonomy import read_taxonomy
from aam.data.distance_io import read_distance_matrix
from aam.data.unifrac import read_tree
from aam.errors import InputError
from aam.explain.importances import read_rf_importances
from aam.explain.truth import signal_sequences
from aam.training.checkpoint import load_checkpoint

DATA = Path(__file__).parent / "data"


def _mutated(seed: bytes):
    """A valid file with a few bytes replaced, inserted or deleted, or cut short."""
    edit = st.tuples(st.sampled_from(["replace", "insert", "delete"]),
                     st.integers(0, max(len(seed) - 1, 0)), st.binary(min_size=1, max_size=4))

    def apply(args):
        edits, cut = args
        data = bytearray(seed)
        for kind, at, chunk in edits:
            at = min(at, len(data))
            if kind == "replace":
                data[at:at + len(chunk)] = chunk
            elif kind == "insert":
                data[at:at] = chunk
            else:
                del data[at:at + len(chunk)]
        return bytes(data[:cut]) if cut is not None else bytes(data)

    return st.tuples(st.lists(edit, min_size=1, max_size=6),
                     st.none() | st.integers(0, len(seed))).map(apply)


def _inputs(*seeds: Path):
    """Arbitrary bytes, or a mutation of one of the valid ``seeds``."""
    mutations = [_mutated(p.read_bytes()) for p in seeds]
    return st.one_of(st.binary(max_size=512), *mutations)


def _text_inputs(*seeds: Path, extra: tuple[bytes, ...] = ()):
    """Like :func:`_inputs`, plus text mutations (line edits) that keep the file UTF-8;
    ``extra`` are further valid files given as bytes."""
    lines = st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
                     max_size=8).map(lambda ls: "\n".join(ls).encode())
    return st.one_of(_inputs(*seeds), lines, *(_mutated(seed) for seed in extra))


def _read(suffix: str, payload: bytes, reader):
    """Write ``payload`` to a file and read it; InputError is an accepted outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(payload)
        try:
            return reader(path)
        except InputError as err:
            assert str(err).strip()  # the entry point prints it as one line
            return None


def _qza(member: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("u/metadata.yaml", "type: Anything\n")
        archive.writestr(f"u/data/{member}", payload)
    return buffer.getvalue()


def _check_table(table):
    if table is None:
        return
    assert isinstance(table, FeatureTable)
    assert table.counts.shape == (len(table.sample_ids), len(table.feature_ids))
    assert np.isfinite(table.counts.data).all() and (table.counts.data >= 0).all()
    assert len(set(table.sample_ids)) == len(table.sample_ids)


@given(_inputs(DATA / "tiny-table.json.biom", DATA / "tiny-table.biom"))
def test_biom_reader(payload):
    _check_table(_read(".biom", payload, read_table))


@given(_inputs(DATA / "tiny-table.qza", DATA / "tiny-rep-seqs.qza"))
def test_qza_reader(payload):
    _check_table(_read(".qza", payload, read_table))


@given(st.binary(max_size=256) | _mutated((DATA / "tiny-table.json.biom").read_bytes()))
def test_qza_member_contents(payload):
    _check_table(_read(".qza", _qza("feature-table.biom", payload), read_table))


@given(_text_inputs(DATA / "tiny-metadata.tsv", DATA / "tiny-metadata-q2.tsv"))
def test_metadata_tsv_reader(payload):
    frame = _read(".tsv", payload, read_metadata)
    if frame is not None:
        assert isinstance(frame, pd.DataFrame) and frame.index.is_unique
        assert all(isinstance(x, str) and x == x.strip() and x for x in frame.index)


@given(_text_inputs(DATA / "tiny-rep-seqs.fasta"))
def test_fasta_reader(payload):
    records = _read(".fasta", payload, read_fasta)
    if records is not None:
        assert records and all(isinstance(v, str) for v in records.values())


@given(_text_inputs(DATA / "tiny-tree.nwk", DATA / "tiny-tree-md5.nwk"))
def test_newick_reader(payload):
    tree = _read(".nwk", payload, read_tree)
    if tree is not None:
        for node in tree.traverse(include_self=True):
            assert node.length is None or (math.isfinite(node.length) and node.length >= 0)


@given(_text_inputs(DATA / "tiny-unifrac.tsv"))
def test_distance_matrix_tsv_reader(payload):
    result = _read(".tsv", payload, read_distance_matrix)
    if result is not None:
        ids, matrix = result
        assert matrix.shape == (len(ids), len(ids)) and np.isfinite(matrix).all()
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)


@given(st.text(max_size=200).map(str.encode) | st.binary(max_size=200))
def test_sample_list_reader(payload):
    ids = _read(".txt", payload, read_sample_list)
    if ids is not None:
        assert ids and len(set(ids)) == len(ids)
        assert all(x == x.strip() and x and "\t" not in x for x in ids)


YAML_SEED = b"train:\n  epochs: 3\n  lr: 0.001\nmodel:\n  embedding_dim: 32\n  dropout: 0.1\n" \
            b"data:\n  batch_size: 8\n  categorical_columns: [a, b]\ncount_penalty: 0.1\n"


@given(st.binary(max_size=200) | _mutated(YAML_SEED))
def test_yaml_config_reader(payload):
    cfg = _read(".yaml", payload, lambda p: load_yaml(FinetuneConfig, p))
    if cfg is not None:
        assert isinstance(cfg, FinetuneConfig)
        assert math.isfinite(cfg.train.lr) and cfg.count_penalty >= 0


TINY_FEATURES = read_table(DATA / "tiny-table.biom").feature_ids
TAXONOMY_SEED = ("Feature ID\tTaxon\tConfidence\n#q2:types\tcategorical\tnumeric\n" + "".join(
    f"{fid}\tk__Bacteria; f__F{i % 3}\t0.9\n" for i, fid in enumerate(TINY_FEATURES))).encode()


@given(_text_inputs(extra=(TAXONOMY_SEED,)))
def test_taxonomy_reader(payload):
    taxa = _read(".tsv", payload, read_taxonomy)
    if taxa is not None:  # parsed: taxon strings keyed by unique, stripped feature IDs
        assert isinstance(taxa, pd.Series) and taxa.index.name == "Feature ID" and len(taxa)
        assert all(isinstance(t, str) for t in taxa)
        ids = [str(i) for i in taxa.index]
        assert all(i and i == i.strip() for i in ids)
        assert len({i.upper() for i in ids}) == len(ids)


RF_SEED = ("sequence\timportance\ttaxon\n" + "".join(
    f"{s}\t{0.5 / (i + 1):.6g}\tk__B\n" for i, s in enumerate(TINY_FEATURES))).encode()


@given(_text_inputs(extra=(RF_SEED,)))
def test_rf_importances_reader(payload):
    got = _read(".tsv", payload, read_rf_importances)
    if got is not None:  # finite importances keyed by unique, stripped upper-case sequences
        assert len(got) and np.isfinite(got.to_numpy(float)).all()
        assert got.index.is_unique
        assert all(s and s == s.strip().upper() for s in got.index)


TRUTH_SEED = json.dumps({"clades": [{"name": "clade-0", "asv_index": [0, 3, 5]},
                                    {"name": "clade-1", "asv_index": [7, 8]}]},
                        indent=2).encode()


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode) | _mutated(TRUTH_SEED))
def test_truth_reader(payload):
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(DATA / "tiny-table.biom", Path(tmp) / "table.biom")
        try:
            signal = _read_at(Path(tmp) / "truth.json", payload, signal_sequences)
        except InputError as err:
            assert str(err).strip()
            return
    assert signal and len(signal) < len(TINY_FEATURES)
    assert signal <= {s.upper() for s in TINY_FEATURES}


def _read_at(path: Path, payload: bytes, reader):
    path.write_bytes(payload)
    return reader(path)


@pytest.fixture(scope="module")
def prepare_json_bytes(tmp_path_factory) -> bytes:
    from aam.cli.__main__ import main as aam_main

    root = tmp_path_factory.mktemp("prepare-json")
    assert aam_main(["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
                     str(DATA / "tiny-metadata.tsv"), "--metadata-column", "ph",
                     "--categorical-columns", "body_site", "--output-dir", str(root)]) == 0
    return (root / "prepare.json").read_bytes()


def test_prepare_json_reader(prepare_json_bytes):
    @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
           | _mutated(prepare_json_bytes))
    def check(payload):
        info = _read(".json", payload, read_prepare_info)
        if info is not None:
            assert isinstance(info, dict)
            assert info.get("task") in (None, "regression", "classification")
            assert isinstance(info.get("target_column") or "", str)
            assert all(isinstance(c, str) for c in info.get("categorical_columns") or [])

    check()


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    from aam.config import ModelConfig, PretrainConfig, to_dict
    from aam.models.pretrain import PretrainModel
    from aam.training.checkpoint import Checkpoint, save_checkpoint

    cfg = PretrainConfig(model=ModelConfig(embedding_dim=8, attention_heads=2,
                                           nucleotide_layers=1, asv_layers=1, sample_layers=1,
                                           max_bp=8))
    path = tmp_path_factory.mktemp("ckpt") / "encoder.pt"
    save_checkpoint(path, Checkpoint("encoder", to_dict(cfg), PretrainModel(cfg).state_dict()))
    return path.read_bytes()


def test_checkpoint_reader(checkpoint_bytes):
    @given(st.binary(max_size=256) | _mutated(checkpoint_bytes))
    def check(payload):
        got = _read(".pt", payload, lambda p: load_checkpoint(p, "encoder"))
        if got is not None:
            assert got.kind == "encoder" and isinstance(got.model_state, dict)

    check()
