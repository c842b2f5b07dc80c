"""The folder ``aam prepare`` writes, loaded back in one object (fast: HDF5 read directly)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from aam.config import TASKS
from aam.data.distance_io import DISTANCES_FILE, read_distances
from aam.data.metadata import is_missing
from aam.data.sample_ids import read_sample_list  # noqa: F401  (the one sample-list reader)
from aam.errors import InputError, first_items, short_text

#: The name earlier aam versions gave ``distances.h5``; a folder that holds it still loads.
LEGACY_DISTANCES_FILE = "unifrac.h5"


@dataclass
class PreparedData:
    """Prepared samples, ASVs and their side data.

    Attributes
    ----------
    sample_ids : list[str]               [N] table order
    sequences : list[str]                [A] ASV sequences, table order (the ASV index)
    counts : scipy.sparse.csr_matrix     float64 [N, A]
    metadata : pandas.DataFrame          index sample_id (str), rows aligned to ``sample_ids``;
                                         values are str, missing values are NaN
    distances : numpy.ndarray or None    float32 [N, N] aligned to ``sample_ids``
    info : dict                          the ``prepare.json`` summary
    """

    sample_ids: list[str]
    sequences: list[str]
    counts: sp.csr_matrix
    metadata: pd.DataFrame
    distances: np.ndarray | None
    info: dict

    def subset(self, sample_ids, source: str = "the sample list") -> "PreparedData":
        """A copy restricted to ``sample_ids`` (in that order); ASVs are kept as they are.

        Raises
        ------
        InputError
            Some IDs are not prepared samples, naming them and ``source``.
        """
        sample_ids = [str(s) for s in sample_ids]
        position = {sid: i for i, sid in enumerate(self.sample_ids)}
        missing = [sid for sid in sample_ids if sid not in position]
        if missing:
            shown = first_items(missing)[len(str(len(missing))) + 1:]
            raise InputError(f"{len(missing)} samples in {source} are not in the prepared table "
                             f"{shown}. Regenerate the split or fix the sample IDs.")
        rows = np.array([position[sid] for sid in sample_ids], dtype=np.int64)
        distances = None if self.distances is None else self.distances[np.ix_(rows, rows)]
        return PreparedData(sample_ids, self.sequences, self.counts[rows],
                            self.metadata.loc[sample_ids], distances, self.info)


def load_prepared(data_dir: str | Path) -> PreparedData:
    """Load ``table.biom``, ``metadata.tsv``, ``prepare.json`` and ``distances.h5`` (if present;
    a folder an earlier aam prepared holds it as ``unifrac.h5``).

    Raises
    ------
    FileNotFoundError
        ``data_dir`` or one of its required files does not exist.
    InputError
        The files disagree (metadata or distance-matrix IDs differ from the table's samples), or
        ``prepare.json`` is not the summary ``aam prepare`` writes.
    """
    data_dir = Path(data_dir)
    for name in ("table.biom", "metadata.tsv", "prepare.json"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"prepared file not found: {data_dir / name} "
                                    "(run `aam prepare --output-dir` first)")
    sample_ids, sequences, counts = _read_biom_hdf5(data_dir / "table.biom")
    metadata = pd.read_csv(data_dir / "metadata.tsv", sep="\t", dtype=str,
                           keep_default_na=False, na_filter=False, index_col=0)
    metadata.index = metadata.index.astype(str)
    metadata.index.name = "sample_id"
    missing = [sid for sid in sample_ids if sid not in metadata.index]
    if missing:
        raise InputError(f"{first_items(missing)} samples of {data_dir / 'table.biom'} have no "
                         f"row in {data_dir / 'metadata.tsv'}. Re-run `aam prepare`.")
    metadata = metadata.loc[sample_ids]
    metadata = metadata.mask(metadata.apply(is_missing))
    distances = _read_distances(data_dir, sample_ids)
    info = read_prepare_info(data_dir / "prepare.json")
    return PreparedData(sample_ids, sequences, counts, metadata, distances, info)


def _read_distances(data_dir: Path, sample_ids: list[str]) -> np.ndarray | None:
    """The folder's distance matrix aligned to ``sample_ids`` (None when it has none)."""
    path = next((data_dir / name for name in (DISTANCES_FILE, LEGACY_DISTANCES_FILE)
                 if (data_dir / name).is_file()), None)
    if path is None:
        return None
    ids, matrix = read_distances(path)
    if ids != sample_ids:
        raise InputError(f"{path} IDs are not the table's samples in table order. Re-run "
                         "`aam prepare`.")
    return matrix


def read_prepare_info(path: str | Path) -> dict:
    """The ``prepare.json`` summary, checked where other commands read it.

    ``target_column`` (text), ``task`` (regression or classification), ``categorical_columns``
    (a list of text) and ``inputs`` (an object) are checked when present.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        The file is not UTF-8 JSON (truncated or garbled), not an object, or one of the checked
        fields has the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared file not found: {path} (run `aam prepare "
                                "--output-dir` first)")
    rerun = "Rerun `aam prepare` to write it again."
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}): it is garbled. "
                         f"{rerun}") from None
    except ValueError as err:  # json.JSONDecodeError, or numbers too long to convert
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path} is truncated or not valid JSON ({reason}). {rerun}") from None
    except RecursionError:
        raise InputError(f"{path} is nested too deeply to be the summary aam prepare writes. "
                         f"{rerun}") from None
    if not isinstance(info, dict):
        raise InputError(f"{path} holds a JSON {type(info).__name__}, not the object aam prepare "
                         f"writes. {rerun}")
    checks = {"target_column": (lambda v: isinstance(v, str), "text"),
              "task": (lambda v: v in TASKS, f"one of {', '.join(TASKS)}"),
              "categorical_columns": (lambda v: isinstance(v, list)
                                      and all(isinstance(c, str) for c in v), "a list of text"),
              "inputs": (lambda v: isinstance(v, dict), "an object")}
    for key, (ok, expected) in checks.items():
        if info.get(key) is not None and not ok(info[key]):
            raise InputError(f"{path}: field '{key}' must be {expected}, got "
                             f"{short_text(repr(info[key]), 40)}. {rerun}")
    return info


def _read_biom_hdf5(path: Path) -> tuple[list[str], list[str], sp.csr_matrix]:
    # BIOM 2.1 stores the table twice; sample/matrix is CSR with samples as rows: our layout.
    with h5py.File(path, "r") as handle:
        n_asvs, n_samples = (int(x) for x in handle.attrs["shape"])
        group = handle["sample"]
        counts = sp.csr_matrix((group["matrix/data"][()], group["matrix/indices"][()],
                                group["matrix/indptr"][()]), shape=(n_samples, n_asvs))
        sample_ids = [_text(x) for x in group["ids"][()]]
        sequences = [_text(x) for x in handle["observation/ids"][()]]
    return sample_ids, sequences, counts


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
