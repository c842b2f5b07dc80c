"""Pure filters on count tables: depth filter, seeded rarefaction, and the drop log they feed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from aam.errors import InputError


@dataclass
class DropLog:
    """Every dropped sample and ASV with its reason, for ``prepare.json``.

    ``samples`` maps a reason to the dropped sample IDs; ``asvs`` maps a reason to
    ``{"count": n, "reads": reads}``.
    """

    samples: dict[str, list[str]] = field(default_factory=dict)
    asvs: dict[str, dict[str, float]] = field(default_factory=dict)

    def drop_samples(self, reason: str, sample_ids) -> None:
        """Record ``sample_ids`` as dropped for ``reason`` (nothing when empty)."""
        sample_ids = [str(s) for s in sample_ids]
        if sample_ids:
            self.samples.setdefault(reason, []).extend(sample_ids)

    def drop_asvs(self, reason: str, count: int, reads: float) -> None:
        """Record ``count`` ASVs carrying ``reads`` reads as dropped for ``reason``."""
        if count:
            entry = self.asvs.setdefault(reason, {"count": 0, "reads": 0})
            entry["count"] += int(count)
            entry["reads"] += _plain_number(reads)

    def summary(self, n_first: int = 5) -> tuple[dict, dict]:
        """``(dropped_samples, dropped_asvs)`` as plain JSON-able dicts."""
        samples = {reason: {"count": len(ids), "first": ids[:n_first]}
                   for reason, ids in self.samples.items()}
        return samples, {reason: dict(entry) for reason, entry in self.asvs.items()}


def _plain_number(value) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else value


def sample_depths(counts: sp.csr_matrix) -> np.ndarray:
    """Reads per sample, float64 [N], of ``counts`` [N, A]."""
    return np.asarray(counts.sum(axis=1)).ravel()


def depth_mask(counts: sp.csr_matrix, min_depth: int) -> np.ndarray:
    """Bool [N]: samples with at least ``min_depth`` reads (and at least one read)."""
    depths = sample_depths(counts)
    return (depths >= min_depth) & (depths > 0)


def rarefy(counts: sp.csr_matrix, depth: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Subsample every sample to exactly ``depth`` reads without replacement.

    Parameters
    ----------
    counts : scipy.sparse.csr_matrix [N, A]
        Integer counts; every sample must have at least ``depth`` reads.
    depth : int
        Reads per sample after rarefaction.
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller for reproducibility).

    Returns
    -------
    scipy.sparse.csr_matrix float64 [N, A]
        Rarefied counts; each row sums to ``depth``.

    Raises
    ------
    InputError
        Non-integer counts, or a sample with fewer than ``depth`` reads.
    """
    counts = sp.csr_matrix(counts)
    if depth < 1:
        raise InputError(f"--rarefy-depth must be >= 1, got {depth}.")
    if not np.allclose(counts.data, np.round(counts.data)):
        raise InputError("Rarefaction needs integer counts, but the table has fractional "
                         "values. Pass raw counts or drop --rarefy-depth.")
    shallow = np.flatnonzero(sample_depths(counts) < depth)
    if shallow.size:
        raise InputError(f"{shallow.size} samples have fewer than {depth} reads; drop them "
                         "before rarefying (prepare does this with reason 'below rarefy depth').")
    out = counts.copy().astype(np.float64)
    for row in range(out.shape[0]):
        start, end = out.indptr[row], out.indptr[row + 1]
        colors = np.round(counts.data[start:end]).astype(np.int64)
        out.data[start:end] = rng.multivariate_hypergeometric(colors, depth)
    out.eliminate_zeros()
    return out
