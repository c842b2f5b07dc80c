"""Pretraining model: the encoder's sample embedding plus a head that predicts sample distances."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aam.config import PretrainConfig
from aam.data.batch import Batch
from aam.models.encoder import AAMEncoder, EncoderOutput


@dataclass
class PretrainOutput:
    """Encoder output plus predicted pairwise distances ``distances`` [B, B]."""

    encoder: EncoderOutput
    distances: Tensor


class DistanceHead(nn.Module):
    """Predict the distance between two samples (the prepared metric: UniFrac, Bray-Curtis, ...)
    from their embeddings.

    ``d(i, j) = b + || W e_i - W e_j ||_2`` for i != j and ``d(i, i) = 0``: a Euclidean distance
    of projected sample embeddings plus a learned offset ``b`` (initialised at 0.5, the middle of
    the [0, 1] range of UniFrac, Bray-Curtis and Jaccard), so the head need not spread every
    embedding apart just to reach the typical distance of unrelated communities. Symmetric, as
    the distances it learns are.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(dim, dim)
        self.offset = nn.Parameter(torch.tensor([0.5]))  # 1-D: FSDP cannot shard a scalar

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "offset"
        if key in state_dict and state_dict[key].ndim == 0:  # older checkpoints held a scalar
            state_dict[key] = state_dict[key].reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def pairwise(self, projected: Tensor) -> Tensor:
        """projected [N, P] -> distances [N, N]; the small epsilon keeps sqrt differentiable
        at 0."""
        diff = projected[:, None, :] - projected[None, :, :]  # [N, N, P]
        distance = torch.sqrt(diff.pow(2).sum(-1) + 1e-8) + self.offset
        off_diagonal = 1.0 - torch.eye(len(projected), device=projected.device)
        return distance * off_diagonal

    def embed(self, sample_emb: Tensor) -> Tensor:
        """sample_emb [B, D] -> projected [B, D] in float32 (outside bf16 autocast)."""
        with torch.autocast(sample_emb.device.type, enabled=False):
            return self.project(sample_emb.float())

    def forward(self, sample_emb: Tensor) -> Tensor:
        """sample_emb [B, D] -> predicted distances [B, B] (float32)."""
        with torch.autocast(sample_emb.device.type, enabled=False):
            return self.pairwise(self.embed(sample_emb))


class PretrainModel(nn.Module):
    """``AAMEncoder`` + ``DistanceHead``; ``.encoder`` is what fine-tuning loads.

    Parameters
    ----------
    cfg : PretrainConfig
        ``cfg.model`` sizes the encoder; ``cfg.model.dropout`` applies to the nucleotide
        encoder only (see the comment in ``__init__``).
    """

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        # Dropout noise drawn independently per sample inflates every predicted distance while
        # training, and the head learns to rely on it (on ibd-2538: pair MSE 0.02 with dropout
        # on vs 0.23 in eval mode on the same training samples). Dropout therefore acts only in
        # the nucleotide encoder, whose noise the samples of a batch share (ASVs are deduped).
        self.encoder = AAMEncoder(cfg.model, sample_dropout=0.0)
        self.distance_head = DistanceHead(cfg.model.embedding_dim)

    def forward(self, batch: Batch, mask_rate: float = 0.0,
                generator: torch.Generator | None = None) -> PretrainOutput:
        """Batch -> PretrainOutput(encoder output, distances [B, B])."""
        out = self.encoder(batch, mask_rate=mask_rate, generator=generator)
        return PretrainOutput(out, self.distance_head(out.sample_emb))
