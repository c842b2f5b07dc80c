"""Samples to batches: ASV sampling to ``token_limit``; vectorised collate with batch-wide dedup.

Everything per ASV (tokens) and per sample (ASV indices and counts, already ordered for the
chosen ``asv_sampling``) is computed once in the constructor; ``__getitem__`` slices, and the
collate pads, deduplicates (``np.unique``) and gathers tokens with numpy.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from aam.config import DataConfig
from aam.data.batch import Batch
from aam.data.beta import TREE_FREE
from aam.data.tokens import longest, tokenize
from aam.errors import InputError, first_items

if TYPE_CHECKING:
    from aam.data.prepared import PreparedData

log = logging.getLogger(__name__)


class SampleDataset(Dataset):
    """One item per sample: its chosen ASVs (global indices) and counts.

    Parameters
    ----------
    data : PreparedData
        Prepared table (``sample_ids``, ``sequences``, ``counts`` csr [n_samples, n_asvs],
        ``distances`` [n_samples, n_samples] or None).
    sample_ids : sequence of str, length N
        The samples of this dataset (a split), in item order.
    cfg : DataConfig
        ``token_limit``, ``asv_sampling`` (first | abundance | random) and ``max_bp``
        (0 = longest ASV).
    targets : array [N], optional
        Already transformed targets: float (regression) or integer class indices.
    cat_ids : int array [N, C], optional
        Category ids from :func:`aam.data.categories.encode_categories`.
    groups : int array [N], optional
        normalize_by group index per sample (zscore-category).
    with_distances : bool
        Put the batch's distance submatrix [B, B] in every batch.
    seed : int
        Seed of the ``random`` ASV draws, combined with the epoch, the validation pass and the
        worker id.

    Raises
    ------
    InputError
        If samples are not in the prepared data, or ``with_distances`` without distances.
    """

    def __init__(
        self,
        data: "PreparedData",
        sample_ids: Sequence[str],
        cfg: DataConfig,
        *,
        targets=None,
        cat_ids=None,
        groups=None,
        with_distances: bool = False,
        seed: int = 0,
    ) -> None:
        self.sample_ids = [str(s) for s in sample_ids]
        self.cfg = cfg
        self.seed = int(seed)
        self.epoch = 0
        self.pass_index = 0
        self._rng_key: Optional[tuple] = None
        self._rng: Optional[np.random.Generator] = None
        self.rows = _rows_of(data.sample_ids, self.sample_ids)
        self.max_bp = int(cfg.max_bp) or longest(data.sequences)
        self.tokens = tokenize(data.sequences, self.max_bp)  # uint8 [n_asvs, L]
        self.distances = _distances_of(data) if with_distances else None
        n = len(self.sample_ids)
        self.targets = _column_array(targets, n, "targets")
        self.cat_ids = _column_array(cat_ids, n, "cat_ids", dtype=np.int64)
        self.groups = _column_array(groups, n, "groups", dtype=np.int64)
        self._indptr, self._asvs, self._counts = _sample_asvs(
            data.counts, self.rows, by_abundance=cfg.asv_sampling == "abundance"
        )

    def __len__(self) -> int:
        return len(self.sample_ids)

    def set_epoch(self, epoch: int) -> None:
        """Make ``random`` draws a function of (seed, epoch, pass, worker); call before each
        epoch (the training loop does, for the training and the validation set)."""
        self.epoch = int(epoch)

    def set_pass(self, pass_index: int) -> None:
        """Multi-pass validation: pass ``p`` of an epoch draws its own ASVs. The attribute is
        copied into DataLoader workers when they start, so every number of workers sees it."""
        self.pass_index = int(pass_index)

    def n_asvs(self, i: int) -> int:
        """Number of ASVs with a non-zero count in sample ``i`` (before ``token_limit``)."""
        return int(self._indptr[i + 1] - self._indptr[i])

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        """``(i, asv_index int64 [s], counts float32 [s])`` with ``s <= token_limit``."""
        start, stop = int(self._indptr[i]), int(self._indptr[i + 1])
        limit = self.cfg.token_limit
        if stop - start > limit:
            if self.cfg.asv_sampling == "random":
                pick = np.sort(self._generator().choice(stop - start, limit, replace=False))
                return i, self._asvs[start + pick], self._counts[start + pick]
            stop = start + limit
        return i, self._asvs[start:stop], self._counts[start:stop]

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        key = (self.seed, self.epoch, self.pass_index, info.id if info is not None else 0)
        if key != self._rng_key:
            self._rng_key = key
            self._rng = np.random.default_rng(np.random.SeedSequence(list(key)))
        return self._rng

    def collate(self, items: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> Batch:
        """Pad items to the batch's longest sample and deduplicate ASVs across the batch."""
        index = np.fromiter((it[0] for it in items), dtype=np.int64, count=len(items))
        lengths = np.fromiter((len(it[1]) for it in items), dtype=np.int64, count=len(items))
        flat_asvs = np.concatenate([it[1] for it in items])
        flat_counts = np.concatenate([it[2] for it in items])
        b, s = len(items), max(int(lengths.max(initial=0)), 1)
        pos_row = np.repeat(np.arange(b), lengths)
        pos_col = np.arange(flat_asvs.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        unique, inverse = np.unique(flat_asvs, return_inverse=True)
        asv_index = np.full((b, s), -1, dtype=np.int64)
        asv_index[pos_row, pos_col] = flat_asvs
        asv_inverse = np.zeros((b, s), dtype=np.int64)
        asv_inverse[pos_row, pos_col] = inverse.reshape(-1)
        counts = np.zeros((b, s), dtype=np.float32)
        counts[pos_row, pos_col] = flat_counts
        rows = self.rows[index]
        return Batch(
            sample_ids=[self.sample_ids[i] for i in index],
            sample_index=torch.from_numpy(rows),
            asv_index=torch.from_numpy(asv_index),
            asv_mask=torch.from_numpy(asv_index >= 0),
            counts=torch.from_numpy(counts),
            unique_tokens=torch.from_numpy(self.tokens[unique].astype(np.int64)),  # [U, L]
            unique_asv_index=torch.from_numpy(unique.astype(np.int64)),
            asv_inverse=torch.from_numpy(asv_inverse),
            distances=_take(self.distances, np.ix_(rows, rows)),
            cat_ids=_take(self.cat_ids, index),
            target=_take(self.targets, index),
            group_index=_take(self.groups, index),
        )


def make_loader(
    dataset: SampleDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool = False,
    num_workers: int = 0,
    sampler=None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding :class:`~aam.data.batch.Batch` objects.

    Shuffling uses a ``torch.Generator`` seeded with ``seed``; a ``sampler`` (e.g.
    ``DistributedSampler``) replaces shuffling. Workers are seeded by :func:`worker_init_fn`.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=bool(shuffle) and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=dataset.collate,
        pin_memory=pin_memory,
        worker_init_fn=worker_init_fn,
        generator=generator,
    )


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy's and Python's global RNGs in each worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def asv_dedup_fraction(batches: Iterable[Batch]) -> float:
    """Share of ASV-encoder work saved by batch dedup: ``1 - sum(U) / sum(real positions)``."""
    unique = real = 0
    for batch in batches:
        unique += int(batch.unique_asv_index.numel())
        real += int(batch.asv_mask.sum())
    return 1.0 - unique / real if real else 0.0


def _rows_of(all_ids: Sequence[str], sample_ids: list[str]) -> np.ndarray:
    position = {str(s): i for i, s in enumerate(all_ids)}
    absent = [s for s in sample_ids if s not in position]
    if absent:
        raise InputError(
            f"{first_items(absent)} samples are not in the prepared table.biom. "
            "Regenerate the split or fix the sample IDs."
        )
    return np.asarray([position[s] for s in sample_ids], dtype=np.int64)


def _distances_of(data) -> np.ndarray:
    if data.distances is None:
        raise InputError(
            "Pretraining needs sample distances, but the prepared data has no distances.h5; "
            "re-run aam prepare with --tree, --distance-matrix or a --beta-metric that needs no "
            f"tree ({', '.join(TREE_FREE)})."
        )
    return np.asarray(data.distances, dtype=np.float32)


def _column_array(values, n: int, name: str, dtype=None) -> Optional[np.ndarray]:
    if values is None:
        return None
    arr = np.asarray(values, dtype=dtype)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} rows for {n} samples")
    return arr


def _take(array: Optional[np.ndarray], index) -> Optional[torch.Tensor]:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array[index]))


def _sample_asvs(counts, rows: np.ndarray, by_abundance: bool):
    """csr rows -> (indptr [N+1], asv int64 [nnz], counts float32 [nnz]) in sampling order."""
    sub = counts[rows].tocsr(copy=True)
    sub.eliminate_zeros()
    sub.sort_indices()
    asvs = sub.indices.astype(np.int64)
    values = sub.data.astype(np.float32)
    if by_abundance:
        owner = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        order = np.lexsort((asvs, -values, owner))  # per sample: highest count, then table order
        asvs, values = asvs[order], values[order]
    return sub.indptr.astype(np.int64), asvs, values
