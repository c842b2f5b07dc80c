"""The batch every model consumes: padded ASV positions plus the batch's distinct ASV sequences."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import torch
from torch import Tensor


@dataclass
class Batch:
    """A collated batch of samples.

    The nucleotide tokens are stored once per distinct ASV of the batch (``unique_tokens``);
    ``asv_inverse`` maps every sample position back to its row, so the nucleotide encoder runs
    once per distinct sequence (samples share most of their ASVs).

    Attributes
    ----------
    sample_ids : list[str]            [B]
    sample_index : LongTensor         [B] row of each sample in the prepared data
    asv_index : LongTensor            [B, S] global ASV index; -1 at padding
    asv_mask : BoolTensor             [B, S] True at real ASVs
    counts : FloatTensor              [B, S] raw counts; 0 at padding
    unique_tokens : LongTensor        [U, L] nucleotide tokens of the distinct ASVs
    unique_asv_index : LongTensor     [U] global ASV index of each row of ``unique_tokens``
    asv_inverse : LongTensor          [B, S] row of ``unique_tokens`` per position; 0 at padding
    distances : FloatTensor or None   [B, B] true distances between the batch's samples
    cat_ids : LongTensor or None      [B, C] category indices; 0 = unseen or missing
    target : Tensor or None           [B] float (transformed) or long (class index)
    group_index : LongTensor or None  [B] normalize_by group of each sample (zscore-category)
    """

    sample_ids: list[str]
    sample_index: Tensor
    asv_index: Tensor
    asv_mask: Tensor
    counts: Tensor
    unique_tokens: Tensor
    unique_asv_index: Tensor
    asv_inverse: Tensor
    distances: Optional[Tensor] = None
    cat_ids: Optional[Tensor] = None
    target: Optional[Tensor] = None
    group_index: Optional[Tensor] = None

    @property
    def size(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                moved[f.name] = value.to(device, non_blocking=non_blocking)
        return replace(self, **moved)

    def pin_memory(self) -> "Batch":
        """Pinned copy (DataLoader calls this when ``pin_memory=True``)."""
        pinned = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                pinned[f.name] = value.pin_memory()
        return replace(self, **pinned)

    def select(self, rows: Sequence[int]) -> "Batch":
        """The batch of the samples at ``rows``: only the ASV rows they use are kept (re-indexed)
        and trailing all-padding columns are dropped, so it is what collating them would give,
        up to the order of ``unique_tokens``."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.asv_mask.device)
        mask = self.asv_mask[index]
        real_columns = mask.any(0).nonzero()
        width = int(real_columns.max()) + 1 if len(real_columns) else 1
        mask = mask[:, :width]
        inverse = self.asv_inverse[index, :width]
        used = torch.unique(inverse[mask])  # sorted rows of unique_tokens
        remapped = torch.searchsorted(used, inverse).clamp_max(max(len(used) - 1, 0))
        return replace(
            self,
            sample_ids=[self.sample_ids[i] for i in index.tolist()],
            sample_index=self.sample_index[index],
            asv_index=self.asv_index[index, :width],
            asv_mask=mask,
            counts=self.counts[index, :width],
            unique_tokens=self.unique_tokens[used],
            unique_asv_index=self.unique_asv_index[used],
            asv_inverse=torch.where(mask, remapped, torch.zeros_like(remapped)),
            distances=None if self.distances is None else self.distances[index][:, index],
            cat_ids=None if self.cat_ids is None else self.cat_ids[index],
            target=None if self.target is None else self.target[index],
            group_index=None if self.group_index is None else self.group_index[index],
        )

    def split(self, parts: int, min_size: int = 1) -> list["Batch"]:
        """At most ``parts`` contiguous batches of near-equal size, each of at least ``min_size``
        samples (fewer parts when the batch is small; ``[self]`` when one part is all it makes).
        """
        n = max(1, min(parts, self.size // max(min_size, 1)))
        if n == 1:
            return [self]
        bounds = [round(i * self.size / n) for i in range(n + 1)]
        return [self.select(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
