"""What the fitted linear start reads: ASV vectors that do not move while fine-tuning trains.

The abundance head (:class:`aam.models.heads.AbundanceHead`) is fitted in closed form over
random Fourier features of the ASV vectors and then kept fixed. Its features are sharp (scale
10), so if it read the vectors of the encoder being fine-tuned, one epoch of encoder updates
scrambled it: on the simulator the training target loss went from 0.79 to 2.5 after epoch 1 and
the fitted start won model selection in 9 of 9 runs. By default (``frozen``) the sequence part
of the encoder (nucleotide encoder + ASV norm) is simply not trained; with ``snapshot``,
:class:`SequenceSnapshot` is a frozen copy of it taken when the head is fitted, the head reads
its vectors and the trained encoder feeds the transformer path only. On the simulator frozen
helped the transformer path more (benchmarks/results/sim-fusion.md).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from aam.data.batch import Batch
from aam.models.asv_cache import AsvVectorCache
from aam.models.encoder import AAMEncoder

# FinetuneConfig.abundance_head_encoder: which ASV vectors the fitted abundance head reads
START_ENCODERS = ("frozen", "snapshot", "live")


class SequenceSnapshot(nn.Module):
    """A frozen copy of ``encoder.nucleotide`` and ``encoder.asv_norm`` (in the state_dict, so a
    saved model predicts with the vectors its head was fitted on); always in eval mode, no
    gradients. Vectors are cached by global ASV index (a plain object, not state) and the cache
    is emptied whenever the copy's weights change.

    A predictor saved before snapshots existed (checkpoint format 4) has none of these keys;
    its head read the encoder's own vectors, so :func:`fill_missing_snapshot` fills the copy
    from the saved encoder's weights and the model predicts as it did.
    """

    PARTS = ("nucleotide", "asv_norm")

    def __init__(self, encoder: AAMEncoder) -> None:
        super().__init__()
        self.nucleotide = copy.deepcopy(encoder.nucleotide)
        self.asv_norm = copy.deepcopy(encoder.asv_norm)
        self.requires_grad_(False)
        self.eval()
        self.cache = AsvVectorCache()

    def train(self, mode: bool = True) -> "SequenceSnapshot":
        return super().train(False)

    @torch.no_grad()
    def take(self, encoder: AAMEncoder) -> None:
        """Copy the encoder's current sequence weights and statistics."""
        for part in self.PARTS:
            getattr(self, part).load_state_dict(getattr(encoder, part).state_dict())
        self.cache = AsvVectorCache()  # a new object: the old one's tensors may be inference
        # tensors (aam predict), which cannot be updated in place

    def encode_asvs(self, unique_tokens: Tensor) -> Tensor:
        """unique_tokens LongTensor [U, L] -> ASV vectors [U, D]."""
        return self.asv_norm(self.nucleotide(unique_tokens.long())[0])

    @torch.no_grad()
    def forward(self, batch: Batch) -> Tensor:
        """Each occurrence's ASV vector [B, S, D] (0 at padding)."""
        vectors = self.cache.vectors(batch.unique_asv_index, batch.unique_tokens,
                                     self.encode_asvs)  # [U, D]
        mask = batch.asv_mask
        return vectors[batch.asv_inverse] * mask.unsqueeze(-1).to(vectors.dtype)

    def _apply(self, fn, *args, **kwargs):
        self.cache = AsvVectorCache()  # moved or cast: re-encode on the new device
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.cache = AsvVectorCache()
        super()._load_from_state_dict(*args, **kwargs)


def fill_missing_snapshot(state_dict: dict, prefix: str) -> None:
    """A predictor saved before snapshots existed (format 4) has no ``start_encoder.`` keys:
    its head read the encoder's own vectors, so the snapshot gets the saved encoder's sequence
    weights (in place; ``prefix`` is the predictor's)."""
    target = prefix + "start_encoder."
    if any(key.startswith(target) for key in state_dict):
        return
    for part in SequenceSnapshot.PARTS:
        source = f"{prefix}encoder.{part}."
        for key in [k for k in state_dict if k.startswith(source)]:
            state_dict[target + part + "." + key[len(source):]] = state_dict[key]
