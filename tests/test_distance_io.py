"""--distance-matrix layouts: unifrac-binaries HDF5 (order + matrix), aam's HDF5 (ids + matrix),
a QIIME 2 DistanceMatrix .qza, scikit-bio TSV, .npy + IDs; unknown layouts name what they hold."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from skbio import DistanceMatrix

from aam.cli.__main__ import main as aam_main
from aam.data.distance_io import read_distance_matrix
from aam.data.prepared import load_prepared
from aam.errors import InputError

DATA = Path(__file__).parent / "data"
IDS = ["1234.10", "1234.20", "S3", "s 4"]


@pytest.fixture
def matrix() -> np.ndarray:
    rng = np.random.default_rng(0)
    m = rng.random((4, 4))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 0.0)
    return m


def _ssu_hdf5(path: Path, ids, matrix) -> None:
    """The layout of unifrac-binaries' ``ssu --format hdf5`` (su_write_distance_matrix):
    ``order`` as fixed-length byte strings, ``matrix`` float64 [N, N]."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("order", data=np.array([s.encode() for s in ids], dtype="S"))
        handle.create_dataset("matrix", data=matrix)


def _aam_hdf5(path: Path, ids, matrix) -> None:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("ids", data=np.array(ids, dtype=object),
                              dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("matrix", data=matrix.astype(np.float32))


def _qza(path: Path, ids, matrix) -> None:
    tsv = path.with_suffix(".tsv")
    DistanceMatrix(matrix, ids).write(str(tsv))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("0f1e/metadata.yaml", "uuid: 0f1e\ntype: DistanceMatrix\nformat: "
                                               "DistanceMatrixDirectoryFormat\n")
        archive.writestr("0f1e/data/distance-matrix.tsv", tsv.read_text())


def _npy(path: Path, ids, matrix) -> None:
    np.save(path, matrix)
    path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")


WRITERS = {"ssu.h5": _ssu_hdf5, "aam.h5": _aam_hdf5, "dm.qza": _qza,
           "skbio.tsv": lambda p, i, m: DistanceMatrix(m, i).write(str(p)), "d.npy": _npy}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_layout_reads_the_same_matrix(name, matrix, tmp_path):
    WRITERS[name](tmp_path / name, IDS, matrix)
    ids, got = read_distance_matrix(tmp_path / name)
    assert ids == IDS
    np.testing.assert_allclose(got, matrix, rtol=1e-6)


def test_layout_is_read_from_content_not_name(matrix, tmp_path):
    _ssu_hdf5(tmp_path / "ssu.dm", IDS, matrix)  # an HDF5 file with an unusual suffix
    assert read_distance_matrix(tmp_path / "ssu.dm")[0] == IDS


def test_unknown_hdf5_layout_lists_datasets_and_layouts(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["samples"] = np.array([b"a", b"b"])
        handle["distances"] = np.zeros((2, 2))
    with pytest.raises(InputError) as err:
        read_distance_matrix(tmp_path / "x.h5")
    message = str(err.value)
    assert "\n" not in message
    assert "datasets distances, samples" in message
    assert "order + matrix (unifrac-binaries ssu)" in message and "ids + matrix" in message


def test_tsv_with_mismatched_header_is_rejected(tmp_path):
    (tmp_path / "m.tsv").write_text("\ta\tb\na\t0\t1\nc\t1\t0\n")
    with pytest.raises(InputError, match="header IDs differ from its row IDs.*accepted layouts"):
        read_distance_matrix(tmp_path / "m.tsv")


def test_prepare_reads_an_ssu_matrix(tmp_path, capsys):
    """aam prepare --distance-matrix with the unifrac-binaries layout, end to end."""
    ids, matrix = read_distance_matrix(DATA / "tiny-unifrac.tsv")
    _ssu_hdf5(tmp_path / "ssu.h5", ids, matrix)
    out = tmp_path / "prepared"
    assert aam_main(["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
                     str(DATA / "tiny-metadata.tsv"), "--metadata-column", "ph",
                     "--distance-matrix", str(tmp_path / "ssu.h5"), "--output-dir",
                     str(out)]) == 0
    data = load_prepared(out)
    position = {s: i for i, s in enumerate(ids)}
    order = [position[s] for s in data.sample_ids]
    np.testing.assert_allclose(data.distances, matrix[np.ix_(order, order)], rtol=1e-6)
    with h5py.File(tmp_path / "bad.h5", "w") as handle:
        handle["distance"] = np.zeros((2, 2))
    code = aam_main(["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
                     str(DATA / "tiny-metadata.tsv"), "--metadata-column", "ph",
                     "--distance-matrix", str(tmp_path / "bad.h5"), "--output-dir",
                     str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown distance-matrix layout" in err and "Traceback" not in err
