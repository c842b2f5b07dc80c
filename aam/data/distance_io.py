"""Distance matrices: the precomputed ones ``aam prepare --distance-matrix`` reads, in the layouts
users have, and ``distances.h5``, the prepared folder's matrix.

Accepted layouts (detected from the file's content, not only its name):

- HDF5 as unifrac-binaries writes it (``ssu -m unweighted -o out.h5 --format hdf5``):
  datasets ``order`` (sample IDs) and ``matrix`` [N, N];
- HDF5 as ``aam prepare`` writes ``distances.h5``: datasets ``ids`` and ``matrix``;
- a QIIME 2 ``DistanceMatrix`` ``.qza`` (its ``data/distance-matrix.tsv``);
- scikit-bio's TSV (``DistanceMatrix.write``): a header row of IDs after an empty corner cell,
  then one row per ID;
- ``.npy`` with the IDs, one a line, in ``<stem>.ids.txt`` or ``<stem>.txt`` beside it.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from aam.data.qza import is_qza, read_qza_member
from aam.data.sample_ids import clean_ids, read_sample_list
from aam.errors import InputError, first_items
from aam.validate import check_distance_matrix

LAYOUTS = ("HDF5 with order + matrix (unifrac-binaries ssu)", "HDF5 with ids + matrix (aam)",
           "QIIME 2 DistanceMatrix .qza", "scikit-bio TSV", ".npy + <stem>.ids.txt")
H5_ID_DATASETS = ("order", "ids")  # unifrac-binaries, aam
DISTANCES_FILE = "distances.h5"  # the prepared folder's sample-by-sample distances


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _unknown(path: Path, found: str) -> InputError:
    return InputError(f"{path}: unknown distance-matrix layout ({found}); accepted layouts: "
                      f"{'; '.join(LAYOUTS)}.")


def read_hdf5_matrix(path: Path) -> tuple[list[str], np.ndarray]:
    """IDs and matrix of an HDF5 file with ``matrix`` and ``order`` or ``ids``."""
    with h5py.File(path, "r") as handle:
        names = sorted(handle.keys())
        key = next((k for k in H5_ID_DATASETS if k in handle), None)
        if key is None or "matrix" not in handle or not isinstance(handle["matrix"],
                                                                   h5py.Dataset):
            raise _unknown(path, f"HDF5 with datasets {', '.join(names) or 'none'}")
        try:
            ids = [_text(x) for x in np.ravel(handle[key][()])]
            matrix = handle["matrix"][()]
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: cannot read datasets {key} and matrix "
                             f"({type(err).__name__}). Fix the file.") from None
    return ids, matrix


def read_tsv_matrix(text: str, path: Path) -> tuple[list[str], np.ndarray]:
    """scikit-bio's TSV layout: IDs in the header and the first column."""
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", index_col=0, dtype={0: str})
        matrix = frame.to_numpy(dtype=np.float64)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise _unknown(path, "not a numeric tab-separated matrix") from None
    ids = [str(i) for i in frame.index]
    if [str(c) for c in frame.columns] != ids:
        raise _unknown(path, "TSV whose header IDs differ from its row IDs")
    return ids, matrix


def read_npy_matrix(path: Path) -> tuple[list[str], np.ndarray]:
    """A ``.npy`` matrix with its IDs file beside it."""
    ids_path = next((p for p in (path.with_suffix(".ids.txt"), path.with_suffix(".txt"))
                     if p.is_file()), None)
    if ids_path is None:
        raise FileNotFoundError(f"IDs file for {path} not found: {path.with_suffix('.ids.txt')} "
                                "(one sample ID a line, in matrix order)")
    ids = read_sample_list(ids_path)
    try:
        # memory-mapped: a header claiming more data than the file holds allocates nothing
        matrix = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:  # object arrays need pickle: refused
        raise InputError(f"{path} is not a numeric .npy array ({str(err)[:80]}). Save the "
                         "distances with numpy.save of a float array.") from None
    return ids, matrix


def read_distance_matrix(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a precomputed distance matrix in any of :data:`LAYOUTS`.

    Returns
    -------
    (list of str [N], numpy.ndarray float64 [N, N])

    Raises
    ------
    FileNotFoundError
        ``path`` (or the ``.npy`` IDs file) does not exist.
    InputError
        An unknown layout (naming what was found and the layouts accepted), bad or repeated IDs,
        or a matrix that is not a distance matrix (:func:`aam.validate.check_distance_matrix`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"distance matrix file not found: {path}")
    if h5py.is_hdf5(path):
        ids, matrix = read_hdf5_matrix(path)
    elif path.suffix == ".npy":
        ids, matrix = read_npy_matrix(path)
    elif is_qza(path):
        text = read_qza_member(path, "-matrix.tsv", "DistanceMatrix").decode("utf-8", "replace")
        ids, matrix = read_tsv_matrix(text, path)
    elif path.suffix == ".qza":
        raise InputError(f"{path} is not a QIIME 2 artifact (a .qza is a zip file; this one is "
                         "not): it may be truncated or renamed. Export the DistanceMatrix again "
                         "(qiime diversity beta ... --o-distance-matrix).")
    else:
        ids, matrix = read_tsv_matrix(path.read_text(encoding="utf-8", errors="replace"), path)
    ids = clean_ids(ids, f"{path} (IDs)")
    return ids, check_distance_matrix(ids, matrix, str(path))


def align_distance_matrix(ids: list[str], matrix: np.ndarray, sample_ids: list[str],
                          source: str) -> np.ndarray:
    """Reorder (and subset) ``matrix`` [M, M] to ``sample_ids`` [N]; float64 [N, N].

    Raises
    ------
    InputError
        Samples absent from the matrix, naming them.
    """
    position = {sid: i for i, sid in enumerate(ids)}
    missing = [sid for sid in sample_ids if sid not in position]
    if missing:
        raise InputError(f"{first_items(missing)} samples of the table are not in the distance "
                         f"matrix {source}. Recompute the matrix for these samples or pass "
                         "--tree instead.")
    order = np.array([position[sid] for sid in sample_ids], dtype=np.int64)
    return matrix[np.ix_(order, order)]


def write_distances(path: str | Path, sample_ids: list[str], matrix: np.ndarray) -> None:
    """Write a prepared folder's distances (datasets ``ids`` utf-8, ``matrix`` float32 [N, N])
    at ``path`` (not atomic: callers pass a temporary path)."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("ids", data=np.array(sample_ids, dtype=object),
                              dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("matrix", data=np.asarray(matrix, dtype=np.float32))


def read_distances(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a prepared folder's distances: (IDs [N], matrix float32 [N, N])."""
    with h5py.File(path, "r") as handle:
        ids = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in handle["ids"][()]]
        matrix = handle["matrix"][()]
    return ids, matrix


__all__ = ["DISTANCES_FILE", "LAYOUTS", "align_distance_matrix", "read_distance_matrix",
           "read_distances", "write_distances"]
