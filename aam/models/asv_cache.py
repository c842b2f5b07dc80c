"""Reuse a deterministic encoder's outputs: ASV vectors by global ASV index, whole sample outputs
by sample index.

A frozen base (``freeze_base``: eval mode, no gradients) and any model at inference give the same
ASV vector for the same sequence and the same sample output for the same ASV set and counts, so
fine-tuning with a frozen base and ``aam predict`` encode each ASV (and, with ``first`` or
``abundance`` sampling, each sample) once per run instead of once per batch, pass and epoch.
The caches are plain objects, never modules or buffers: a model's ``state_dict`` is unchanged.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor

from aam.data.batch import Batch
from aam.models.encoder import AAMEncoder, EncoderOutput

log = logging.getLogger(__name__)

# Above this many bytes of cached sample outputs, new samples use the ASV-level cache only.
SAMPLE_CACHE_MAX_BYTES = 1 << 30


class AsvVectorCache:
    """Global ASV index -> nucleotide-encoder vector [D]; each ASV is encoded once.

    ``encoded`` counts ASVs run through the encoder, ``requested`` the batch-unique ASVs asked
    for; ``1 - encoded / requested`` is the share of encoder work saved.
    """

    def __init__(self) -> None:
        self.slot = torch.full((0,), -1, dtype=torch.long)  # global ASV index -> table row
        self.table: Optional[Tensor] = None  # [capacity, D]; rows [0, encoded) are filled
        self.encoded = self.requested = 0

    def vectors(self, keys: Tensor, tokens: Tensor,
                encode: Callable[[Tensor], Tensor]) -> Tensor:
        """ASV vectors of a batch's distinct ASVs, encoding only those not seen before.

        Parameters
        ----------
        keys : LongTensor [U]
            Global ASV index of each row of ``tokens`` (``Batch.unique_asv_index``).
        tokens : LongTensor [U, L]
            Nucleotide tokens (``Batch.unique_tokens``).
        encode : callable
            ``tokens [n, L] -> vectors [n, D]`` (e.g. ``AAMEncoder.encode_asvs``).

        Returns
        -------
        FloatTensor [U, D]
            On the device of ``encode``'s output.
        """
        keys = keys.cpu()
        if keys.numel() and int(keys.max()) >= len(self.slot):
            grown = torch.full((int(keys.max()) + 1,), -1, dtype=torch.long)
            grown[: len(self.slot)] = self.slot
            self.slot = grown
        if self.table is not None and self.table.device != tokens.device:
            self.clear()  # the model moved: rebuild on its device
        new = self.slot[keys] < 0  # [U]
        if new.any():
            self._store(keys[new], encode(tokens[new.to(tokens.device)]))
        self.requested += len(keys)
        return self.lookup(keys)

    def lookup(self, keys: Tensor) -> Tensor:
        """Vectors [U, D] of ASVs already encoded (not counted as requests)."""
        return self.table[self.slot[keys.cpu()].to(self.table.device)]

    def clear(self) -> None:
        """Forget every vector (after the encoder's weights or device changed)."""
        self.slot.fill_(-1)
        self.table = None
        self.encoded = 0

    def _store(self, keys: Tensor, vectors: Tensor) -> None:
        stop = self.encoded + len(keys)
        if self.table is None or stop > len(self.table):
            capacity = max(stop, 2 * (0 if self.table is None else len(self.table)), 256)
            grown = vectors.new_empty(capacity, vectors.shape[-1])  # [capacity, D]
            if self.table is not None:
                grown[: self.encoded] = self.table[: self.encoded]
            self.table = grown
        self.table[self.encoded:stop] = vectors
        self.slot[keys] = torch.arange(self.encoded, stop)
        self.encoded = stop


@dataclass
class _SampleEntry:
    asv_index: Tensor  # LongTensor [S_i] (CPU): the sample's ASVs, the entry's key check
    counts: Tensor  # FloatTensor [S_i] (CPU)
    asv_emb: Tensor  # [S_i, D]
    sample_emb: Tensor  # [D]


class _DeviceCache:
    """The cached outputs on one device (``nn.DataParallel`` replicas each use their own)."""

    def __init__(self) -> None:
        self.asvs = AsvVectorCache()
        self.samples: dict[int, _SampleEntry] = {}
        self.sample_bytes = 0


class EncoderCache:
    """Encoder outputs of a deterministic encoder, reused across batches, passes and epochs.

    Parameters
    ----------
    sample_level : bool
        Also keep each sample's whole output (``asv_emb`` [S_i, D], ``sample_emb`` [D]) keyed by
        ``Batch.sample_index``; a batch whose samples are all cached skips the encoder. Useful
        when a sample's ASV set is fixed (``first``/``abundance`` sampling). An entry is used only
        if the batch row has exactly the cached ASVs and counts, so a new draw is never served a
        stale output.
    max_sample_bytes : int
        Memory cap of the sample-level entries (per device); above it further samples use the
        ASV-level cache only (logged once).
    """

    def __init__(self, sample_level: bool = False,
                 max_sample_bytes: int = SAMPLE_CACHE_MAX_BYTES) -> None:
        self.sample_level = sample_level
        self.max_sample_bytes = max_sample_bytes
        self._parts: dict[torch.device, _DeviceCache] = {}
        self.sample_hits = self.sample_misses = 0
        self._full_logged = False

    @property
    def encoded(self) -> int:
        """ASVs run through the nucleotide encoder."""
        return sum(p.asvs.encoded for p in self._parts.values())

    @property
    def requested(self) -> int:
        """Batch-unique ASVs asked for (cached or not)."""
        return sum(p.asvs.requested for p in self._parts.values())

    @property
    def n_samples(self) -> int:
        """Samples whose whole encoder output is cached."""
        return sum(len(p.samples) for p in self._parts.values())

    def encode(self, encoder: AAMEncoder, batch: Batch) -> EncoderOutput:
        """``encoder``'s output for ``batch`` (no masking, no gradients), from the cache where
        possible.

        Returns
        -------
        EncoderOutput
            ``asv_emb`` [B, S, D] (0 at padding), ``sample_emb`` [B, D], ``asv_mask`` [B, S].
        """
        device = batch.asv_mask.device
        part = self._parts.get(device)
        if part is None:
            part = self._parts.setdefault(device, _DeviceCache())
        with torch.no_grad():
            cached = self._from_samples(part, batch) if self.sample_level else None
            if cached is not None:  # its ASVs were encoded when it was stored
                cached.asv_vectors, cached.count_features = encoder.occurrence_inputs(
                    part.asvs.lookup(batch.unique_asv_index), batch)
                return cached
            vectors = part.asvs.vectors(batch.unique_asv_index, batch.unique_tokens.long(),
                                        encoder.encode_asvs)  # [U, D]
            out = encoder.encode_samples(vectors, batch)
            if self.sample_level:
                self._store_samples(part, batch, out.asv_emb, out.sample_emb)
        return out

    def clear(self) -> None:
        """Forget everything (the encoder's weights changed)."""
        self._parts.clear()

    def summary(self) -> str:
        """One line of reuse statistics for the log."""
        encoded, requested = self.encoded, self.requested
        saved = 1 - encoded / requested if requested else 0.0
        text = (f"encoder cache: {encoded} distinct ASVs encoded for {requested} batch-unique "
                f"ASVs ({100 * saved:.0f}% reused)")
        if self.sample_level:
            size = sum(p.sample_bytes for p in self._parts.values())
            text += (f"; {self.sample_hits} sample outputs reused, {self.sample_misses} "
                     f"computed, {self.n_samples} samples cached ({size / 2**20:.1f} MiB)")
        return text

    @staticmethod
    def _rows(batch: Batch) -> tuple[list[int], Tensor, Tensor, Tensor]:
        """(sample rows, asv_index [B, S], counts [B, S], asv_mask [B, S]) on the CPU."""
        return (batch.sample_index.tolist(), batch.asv_index.cpu(), batch.counts.cpu(),
                batch.asv_mask.cpu())

    def _from_samples(self, part: _DeviceCache, batch: Batch) -> Optional[EncoderOutput]:
        rows, asv_index, counts, mask = self._rows(batch)
        entries = []
        for b, row in enumerate(rows):
            entry = part.samples.get(row)
            real = mask[b]
            if entry is None or not (torch.equal(entry.asv_index, asv_index[b][real])
                                     and torch.equal(entry.counts, counts[b][real])):
                self.sample_misses += len(rows)
                return None
            entries.append(entry)
        self.sample_hits += len(rows)
        first = entries[0].asv_emb
        asv_emb = first.new_zeros(*batch.asv_mask.shape, first.shape[-1])  # [B, S, D]
        for b, entry in enumerate(entries):
            asv_emb[b, : len(entry.asv_index)] = entry.asv_emb  # real ASVs lead each row
        sample_emb = torch.stack([e.sample_emb for e in entries])  # [B, D]
        return EncoderOutput(asv_emb, sample_emb, batch.asv_mask)

    def _store_samples(self, part: _DeviceCache, batch: Batch, asv_emb: Tensor,
                       sample_emb: Tensor) -> None:
        rows, asv_index, counts, mask = self._rows(batch)
        for b, row in enumerate(rows):
            if row in part.samples:
                continue  # a different draw of a cached sample: keep the first
            real = mask[b]
            n = int(real.sum())
            size = (n + 1) * asv_emb.shape[-1] * asv_emb.element_size() + n * 12
            if part.sample_bytes + size > self.max_sample_bytes:
                if not self._full_logged:
                    log.info("sample-level encoder cache is full (%d samples, cap %.0f MiB): "
                             "further samples reuse ASV vectors only", len(part.samples),
                             self.max_sample_bytes / 2**20)
                    self._full_logged = True
                return
            part.samples[row] = _SampleEntry(asv_index[b][real].clone(), counts[b][real].clone(),
                                             asv_emb[b, :n].clone(), sample_emb[b].clone())
            part.sample_bytes += size


@contextmanager
def cached_encoder(model, sample_level: bool = False,
                   enabled: bool = True) -> Iterator[Optional[EncoderCache]]:
    """Give ``model`` (a :class:`~aam.models.predictor.Predictor`) a fresh
    :class:`EncoderCache` for the ``with`` block (none at all when ``enabled`` is False); its
    previous cache is restored afterwards.

    The model's encoder must not change inside the block (use it for inference).
    """
    previous = model.encoder_cache
    cache = EncoderCache(sample_level) if enabled else None
    model.encoder_cache = cache
    try:
        yield cache
    finally:
        model.encoder_cache = previous


__all__ = ["AsvVectorCache", "EncoderCache", "cached_encoder", "SAMPLE_CACHE_MAX_BYTES"]
