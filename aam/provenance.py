"""Provenance: short fingerprints of what an artefact was made from.

``aam prepare`` records the fingerprints of its input files in ``prepare.json``
(``provenance``), ``aam split`` those of the metadata and of every sample list in
``splits.json``, and training those of the prepared data and its sample lists in every
checkpoint and model.

``provenance(data, train_ids, val_ids, data_dir, target_column)`` fingerprints the prepared data
(samples, ASV sequences, counts, distances, and the target's values) and the two sample lists. Every
checkpoint and model of ``aam pretrain`` / ``aam train`` holds it (``Checkpoint.provenance``). A
resumed run compares it with its own inputs and refuses another data set or other sample lists,
naming both sides: otherwise its best epoch would be chosen by comparing losses of different data.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from aam.errors import InputError

log = logging.getLogger(__name__)

#: What is compared, and the words that name it in an error.
PARTS = {"data": "prepared data", "train_samples": "training samples",
         "val_samples": "validation samples"}


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def _text(items: Sequence[str]) -> bytes:
    return "\n".join(map(str, items)).encode()


def data_fingerprint(data, target_column: str = "") -> str:
    """The prepared samples, ASV sequences, counts, sample distances and (when given) the
    target's values."""
    counts = data.counts.tocsr()
    target = b""
    if target_column and target_column in data.metadata.columns:
        target = _text(data.metadata.loc[data.sample_ids, target_column].astype(str).tolist())
    distances = b"" if data.distances is None else np.ascontiguousarray(data.distances).tobytes()
    return _digest(_text(data.sample_ids), _text(data.sequences),
                   np.ascontiguousarray(counts.indptr, dtype=np.int64).tobytes(),
                   np.ascontiguousarray(counts.indices, dtype=np.int64).tobytes(),
                   np.ascontiguousarray(counts.data, dtype=np.float64).tobytes(), target,
                   distances)


def file_fingerprint(path) -> str:
    """Fingerprint of a file's bytes (read in blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def inputs_fingerprints(paths: dict) -> dict:
    """``{name: fingerprint}`` of the input files that are given (None and "" skipped)."""
    return {name: file_fingerprint(path) for name, path in paths.items() if path}


def list_fingerprint(sample_ids: Sequence[str]) -> str:
    """Fingerprint of a sample list (order does not matter)."""
    return _digest(_text(sorted(map(str, sample_ids))))


def provenance(data, train_ids: Sequence[str], val_ids: Sequence[str], data_dir: Path,
               target_column: str = "") -> dict:
    """The fingerprints of a run's inputs (and where the data came from, for messages)."""
    return {"data": data_fingerprint(data, target_column),
            "train_samples": list_fingerprint(train_ids),
            "val_samples": list_fingerprint(val_ids),
            "data_dir": str(data_dir)}


def check_same_inputs(saved: Optional[dict], current: dict, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` on other inputs than it was trained on.

    Raises
    ------
    InputError
        Naming what differs (prepared data, training or validation samples) and both sides.
    """
    if not isinstance(saved, dict):
        log.warning("%s records no provenance (written by an older aam): it cannot be checked "
                    "that this run resumes on the same data and sample lists", checkpoint)
        return
    for key, words in PARTS.items():
        if saved.get(key) != current[key]:
            where = (f" (prepared in {saved.get('data_dir')}, now {current['data_dir']})"
                     if key == "data" else "")
            raise InputError(
                f"--resume-from {checkpoint} was trained on other {words} than this run's"
                f"{where}: fingerprint {saved.get(key)} in the checkpoint, {current[key]} here. "
                "Resume with the same --data-dir and sample lists, or start a new run without "
                "--resume-from.")
