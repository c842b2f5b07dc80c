"""Data side of multi-process training: per-rank loaders and gathering validation rows.

Training batches come from a ``DistributedSampler`` on every run (one process included), so
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
from torch.utils.data.distributed import DistributedSampler

from aam.config import DataConfig
from aam.training.distributed import DistContext, gather_objects


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

    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=seed, drop_last=False)
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
