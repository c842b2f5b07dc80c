"""BIOM tables in and out: BIOM 2.1 HDF5 or JSON (via biom-format) and QIIME 2 FeatureTable .qza."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from biom import Table, load_table

from aam.data.qza import is_qza, read_qza_member
from aam.data.sample_ids import clean_ids
from aam.errors import InputError
from aam.validate import check_counts

log = logging.getLogger(__name__)


@dataclass
class FeatureTable:
    """A count table with samples as rows (our orientation; BIOM stores observations as rows).

    Attributes
    ----------
    sample_ids : list[str]        [N]
    feature_ids : list[str]       [F] BIOM observation IDs (sequences or hash IDs)
    counts : scipy.sparse.csr_matrix float64 [N, F]
    """

    sample_ids: list[str]
    feature_ids: list[str]
    counts: sp.csr_matrix


def read_table(path: str | Path, allow_fractional: bool = False) -> FeatureTable:
    """Read a BIOM 2.1 table (HDF5 or JSON) or a QIIME 2 FeatureTable ``.qza``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        The file is neither a BIOM table nor a ``.qza`` artifact holding one, or its counts are
        not finite, negative or (unless ``allow_fractional``) not whole numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file not found: {path}")
    if is_qza(path):
        payload = read_qza_member(path, ".biom", "FeatureTable[Frequency]")
        with tempfile.TemporaryDirectory() as tmp:
            inner = Path(tmp) / "feature-table.biom"
            inner.write_bytes(payload)
            table = _load_biom(inner, path)
    else:
        table = _load_biom(path, path)
    if 0 in table.shape:
        raise InputError(f"{path} is not a BIOM table or QIIME 2 .qza artifact with counts: it "
                         f"reads as {table.shape[1]} samples x {table.shape[0]} features. Pass a "
                         "non-empty BIOM 2.1 table or FeatureTable .qza.")
    try:
        counts = sp.csr_matrix(table.matrix_data.T, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{path} has counts that are not numbers ({err}). Pass a BIOM table of "
                         "read counts.") from None
    sample_ids = clean_ids(table.ids(axis="sample"), f"{path} (sample IDs)")
    feature_ids = [str(x) for x in table.ids(axis="observation")]
    check_counts(counts, sample_ids, feature_ids, str(path), allow_fractional)
    log.info("read %s: %d samples x %d features", path, len(sample_ids), len(feature_ids))
    return FeatureTable(sample_ids, feature_ids, counts)


def _load_biom(path: Path, shown: Path) -> Table:
    try:
        return load_table(str(path))
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure of a third-party reader is bad input
        raise InputError(
            f"{shown} is not a BIOM table or QIIME 2 .qza artifact ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'unreadable'}). Pass a BIOM 2.1 "
            "(HDF5 or JSON) table or a FeatureTable .qza."
        ) from err


def write_table(path: str | Path, sample_ids: list[str], asv_ids: list[str],
                counts: sp.csr_matrix, generated_by: str = "aam prepare") -> None:
    """Write ``counts`` [N samples, A asvs] as a BIOM 2.1 HDF5 file at ``path`` (not atomic:
    callers pass a temporary path from ``aam.atomic.atomic_path``)."""
    table = Table(sp.csr_matrix(counts).T.tocsr(), observation_ids=list(asv_ids),
                  sample_ids=list(sample_ids))
    with h5py.File(path, "w") as handle:
        table.to_hdf5(handle, generated_by)
