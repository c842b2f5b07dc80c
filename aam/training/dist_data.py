"""Data side of multi-process training: per-rank loaders and gathering validation rows.

Training batches come from :class:`RankSampler` on every run (one process included), so
``world_size`` ranks x ``batch_size`` see exactly the global batches one process sees with
``batch_size x world_size``: rank r takes positions r, r + W, ... of the same seeded permutation.
Validation shards samples without padding (:class:`ShardSampler`), and the objectives gather the
rows of all ranks (:func:`gather_samples`), so every validation sample counts exactly once.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from aam.config import DataConfig
from aam.training.distributed import DistContext, gather_objects


class RankSampler(Sampler[int]):
    """This rank's share of one seeded shuffle per epoch (a ``DistributedSampler`` whose order
    on one process is the one a shuffling ``DataLoader`` has).

    The permutation of epoch e comes from a generator seeded with ``seed + e`` after one draw
    (the draw ``DataLoader`` takes for worker seeds), so one process keeps its usual order. It is
    padded with its first items to a multiple of ``world_size``, then rank r takes positions
    r, r + W, ...: every rank gets the same number of samples (DDP needs equal batch counts).
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch = 0
        self.num_samples = -(-n // world_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by the loop before each epoch (with ``dataset.set_epoch``)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        order = torch.randperm(self.n, generator=generator).tolist()
        total = self.num_samples * self.world_size
        order += (order * (1 + total // max(self.n, 1)))[: total - len(order)]
        return iter(order[self.rank:total:self.world_size])

    def __len__(self) -> int:
        return self.num_samples


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + W, rank + 2W, ...`` of ``n`` items: no padding, no duplicates.

    Ranks may get one item more or less than each other; validation runs on the plain module,
    so no collective waits on the batch count.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loaders(train_set, val_set, data_cfg: DataConfig, seed: int, ctx: DistContext,
                  drop_last: bool = False) -> tuple[DataLoader, DataLoader]:
    """Training loader (seeded shuffle, this rank's share) and validation loader (this rank's
    shard, table order). ``data_cfg.batch_size`` is per rank.

    Parameters
    ----------
    train_set, val_set : SampleDataset
    data_cfg : DataConfig
        ``batch_size`` (per process) and ``num_workers``.
    seed : int
        Shuffling seed; the loop reseeds it per epoch with ``sampler.set_epoch``.
    ctx : DistContext
    drop_last : bool
        Drop this rank's last incomplete training batch.
    """
    from aam.data.dataset import make_loader

    sampler = RankSampler(len(train_set), seed, ctx.rank, ctx.world_size)
    train = make_loader(train_set, data_cfg.batch_size, shuffle=False, seed=seed,
                        drop_last=drop_last, num_workers=data_cfg.num_workers, sampler=sampler)
    shard = ShardSampler(len(val_set), ctx.rank, ctx.world_size)
    val = make_loader(val_set, data_cfg.batch_size, shuffle=False, seed=seed,
                      num_workers=data_cfg.num_workers, sampler=shard)
    return train, val


def gather_samples(sample_ids: Sequence[str], tensors: Sequence[Tensor],
                   ctx: DistContext) -> tuple[list[str], list[Tensor]]:
    """Rows of every rank, each sample once (first occurrence), in rank order.

    Parameters
    ----------
    sample_ids : list of str [N_rank]
    tensors : sequence of Tensor [N_rank, ...]
        Moved to the CPU before gathering.
    ctx : DistContext

    Returns
    -------
    (list of str [N], list of Tensor [N, ...])
    """
    local = (list(sample_ids), [t.detach().cpu() for t in tensors])
    if not ctx.is_distributed:
        return local
    parts = [part for part in gather_objects(local, ctx) if part[0]] or [local]
    ids = [s for part in parts for s in part[0]]
    merged = [torch.cat([part[1][k] for part in parts]) for k in range(len(tensors))]
    _, first = np.unique(np.asarray(ids, dtype=object), return_index=True)
    keep = np.sort(first)
    if len(keep) == len(ids):
        return ids, merged
    index = torch.as_tensor(keep)
    return [ids[i] for i in keep], [t[index] for t in merged]
