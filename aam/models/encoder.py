"""The hierarchical encoder: nucleotides -> one vector per ASV -> ASVs of a sample -> sample vector.

The nucleotide encoder sees each distinct ASV of a batch once (``Batch.unique_tokens`` [U, L]);
``Batch.asv_inverse`` scatters the ASV vectors back to sample positions [B, S]. A sample is a set
of ASVs: there are no position embeddings across ASVs, only an embedding of each ASV's count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aam.config import ModelConfig
from aam.data.batch import Batch
from aam.data.tokens import MASK, PAD, VOCAB_SIZE
from aam.models.attention import AttentionPooling, TransformerStack

IGNORE_INDEX = -100  # cross-entropy target at positions that were not masked


@dataclass
class EncoderOutput:
    """What the encoder hands to heads.

    Attributes
    ----------
    asv_emb : FloatTensor [B, S, D]       contextual ASV embeddings (0 at padding)
    sample_emb : FloatTensor [B, D]       pooled sample embedding
    asv_mask : BoolTensor [B, S]          True at real ASVs
    nuc_logits : FloatTensor [U, L, V] or None   masked-nucleotide logits (when masking)
    nuc_targets : LongTensor [U, L] or None      true token at masked positions, -100 elsewhere
    count_features : FloatTensor [B, S, F] or None   the abundance features the sample encoder
        read (:func:`count_features`; 0 at padding)
    asv_vectors : FloatTensor [B, S, D] or None      each occurrence's ASV vector before counts
        and context enter (depends on the sequence only; 0 at padding)
    """

    asv_emb: Tensor
    sample_emb: Tensor
    asv_mask: Tensor
    nuc_logits: Optional[Tensor] = None
    nuc_targets: Optional[Tensor] = None
    count_features: Optional[Tensor] = None
    asv_vectors: Optional[Tensor] = None


def mask_nucleotides(tokens: Tensor, rate: float, generator: torch.Generator | None = None,
                     bert_style: bool = True) -> tuple[Tensor, Tensor]:
    """Hide a fraction of the real nucleotides for the masked-nucleotide objective.

    Parameters
    ----------
    tokens : LongTensor [U, L]
        Nucleotide tokens (``PAD`` after the sequence end).
    rate : float
        Probability that a real (non-pad) nucleotide is selected.
    generator : torch.Generator, optional
        Source of randomness (a fixed one makes evaluation masks repeatable).
    bert_style : bool
        Selected positions become ``MASK`` 80% of the time, a random base 10%, unchanged 10%
        (Devlin et al. 2019); otherwise always ``MASK``.

    Returns
    -------
    masked : LongTensor [U, L]
    targets : LongTensor [U, L]
        The original token at selected positions, ``-100`` elsewhere.
    """
    real = (tokens != PAD) & (tokens != MASK)
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    selected = real & (draw < rate)
    targets = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    masked = tokens.clone()
    if not bert_style:
        return masked.masked_fill(selected, MASK), targets
    kind = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    random_base = torch.randint(1, MASK, tokens.shape, generator=generator, device=tokens.device)
    masked = torch.where(selected & (kind < 0.8), torch.full_like(tokens, MASK), masked)
    masked = torch.where(selected & (kind >= 0.8) & (kind < 0.9), random_base, masked)
    return masked, targets


class NucleotideEncoder(nn.Module):
    """ASV encoder: nucleotide patches + position embedding -> transformer -> attention pooling.

    Each token covers ``nucleotide_patch`` consecutive bases (their embeddings concatenated and
    projected), so a 100-nt ASV is 25 tokens at the default 4: the encoder's linear work falls
    4x and its attention work 16x, while the masked-nucleotide head still predicts every base
    (``patch x vocab`` logits per token).

    Parameters
    ----------
    cfg : ModelConfig
        ``embedding_dim``, ``attention_heads``, ``nucleotide_layers``, ``ff_mult``, ``dropout``,
        ``max_bp``, ``nucleotide_patch`` and ``gradient_checkpointing``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, self.patch = cfg.embedding_dim, cfg.nucleotide_patch
        self.max_bp = cfg.max_bp
        self.token_emb = nn.Embedding(VOCAB_SIZE, d, padding_idx=PAD)
        self.patch_proj = nn.Linear(self.patch * d, d) if self.patch > 1 else nn.Identity()
        self.pos_emb = nn.Embedding(math.ceil(cfg.max_bp / self.patch), d)
        self.layers = TransformerStack(d, cfg.attention_heads, cfg.nucleotide_layers, cfg.ff_mult,
                                       cfg.dropout, cfg.gradient_checkpointing)
        self.pool = AttentionPooling(d)
        self.nuc_head = nn.Linear(d, self.patch * VOCAB_SIZE)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens: LongTensor [U, L] -> (asv_vectors [U, D], hidden [U, L / patch, D])."""
        n, length = tokens.shape
        if length > self.max_bp:
            raise ValueError(f"ASV tokens have {length} positions but the model's max_bp is "
                             f"{self.max_bp}")
        tokens = F.pad(tokens, (0, -length % self.patch), value=PAD)  # [U, T * patch]
        t = tokens.shape[1] // self.patch
        mask = (tokens != PAD).view(n, t, self.patch).any(-1)  # [U, T]
        x = self.token_emb(tokens).view(n, t, -1)  # [U, T, patch * D]
        x = self.patch_proj(x) + self.pos_emb(torch.arange(t, device=tokens.device))[None]
        hidden = self.layers(x, mask)  # [U, T, D]
        pooled, _ = self.pool(hidden, mask)  # [U, D]
        return pooled, hidden

    def nucleotide_logits(self, hidden: Tensor, length: int) -> Tensor:
        """hidden [U, T, D] -> logits for every base [U, length, VOCAB_SIZE]."""
        n, t, _ = hidden.shape
        return self.nuc_head(hidden).view(n, t * self.patch, VOCAB_SIZE)[:, :length]


# The abundance features of an ASV occurrence, in order: log1p(count), which grows with
# sequencing depth; the centred log relative abundance over the sample's real ASVs, / 4 (it
# depends on which other ASVs the sample holds); the relative abundance.
COUNT_FEATURES = ("log1p", "clr", "relative")


def count_features(counts: Tensor, mask: Tensor) -> Tensor:
    """Per-ASV count features [B, S, F] (:data:`COUNT_FEATURES`) from raw ``counts`` [B, S] (0
    at padding)."""
    counts = counts.float() * mask
    relative = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
    return torch.stack([torch.log1p(counts), centred_log_ratio(counts, mask) / 4.0, relative],
                       dim=-1)


def centred_log_ratio(counts: Tensor, mask: Tensor) -> Tensor:
    """CLR abundance [B, S] over each sample's real ASVs (``mask``), 0 at padding: log relative
    abundance minus its mean (Aitchison 1982), the usual scale of compositional data."""
    maskf = mask.float()
    counts = counts.float() * maskf
    log_rel = torch.log(counts / counts.sum(-1, keepdim=True).clamp_min(1.0) + 1e-6) * maskf
    centre = log_rel.sum(-1, keepdim=True) / maskf.sum(-1, keepdim=True).clamp_min(1.0)
    return (log_rel - centre) * maskf


class ASVNorm(nn.Module):
    """Standardises ASV vectors [U, D] across the batch's distinct ASVs (batch norm; running
    statistics in eval mode, so an ASV's vector then depends on its sequence only).

    The nucleotide encoder maps 16S sequences that share most of their bases to nearly parallel
    vectors (mean cosine 0.997 on sleep-apnea); removing the shared part and rescaling lets the
    sample encoder tell ASVs apart from the first step.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, vectors: Tensor) -> Tensor:
        """vectors [U, D] -> standardised vectors [U, D]."""
        if self.training and vectors.shape[0] < 2:  # one ASV has no spread: running statistics
            n = self.norm
            return F.batch_norm(vectors, n.running_mean, n.running_var, n.weight, n.bias,
                                False, 0.0, n.eps)
        return self.norm(vectors)


class CountFeatures(nn.Module):
    """:func:`count_features` as a module (no parameters), so one hook sees the abundance input
    wherever the model reads it (the count embedding and the abundance head)."""

    def forward(self, counts: Tensor, mask: Tensor) -> Tensor:
        """counts [B, S], mask [B, S] -> features [B, S, F]."""
        return count_features(counts, mask)


class SampleEncoder(nn.Module):
    """Transformer across the ASVs of a sample, with a count embedding and padding mask.

    The count enters as ``Linear(count_features)`` added to each ASV vector
    (:func:`count_features`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.count_input = CountFeatures()
        self.count_emb = nn.Linear(len(COUNT_FEATURES), d)
        self.layers = TransformerStack(d, cfg.attention_heads, cfg.asv_layers, cfg.ff_mult,
                                       cfg.dropout, cfg.gradient_checkpointing)

    def forward(self, asv_vectors: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        """asv_vectors [B, S, D], count features [B, S, F] (``count_input``), mask [B, S]
        -> asv_emb [B, S, D]."""
        x = asv_vectors + self.count_emb(features)
        return self.layers(x * mask.unsqueeze(-1).to(x.dtype), mask)


class AAMEncoder(nn.Module):
    """Nucleotide encoder -> sample encoder -> sample transformer -> attention pooling.

    Parameters
    ----------
    cfg : ModelConfig
        Sizes; ``max_bp`` must be at least the token length of the batches.
    sample_dropout : float, optional
        Dropout of the ASV/sample transformers if it should differ from ``cfg.dropout`` (no
        parameters depend on it, so state dicts are interchangeable).
    """

    def __init__(self, cfg: ModelConfig, sample_dropout: float | None = None) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.cfg = cfg
        self.nucleotide = NucleotideEncoder(cfg)
        self.asv_norm = ASVNorm(d)
        sample_cfg = cfg if sample_dropout is None else replace(cfg, dropout=sample_dropout)
        self.sample = SampleEncoder(sample_cfg)
        self.sample_layers = TransformerStack(d, cfg.attention_heads, cfg.sample_layers,
                                              cfg.ff_mult, sample_cfg.dropout,
                                              cfg.gradient_checkpointing)
        self.pool = AttentionPooling(d)

    def encode_asvs(self, unique_tokens: Tensor) -> Tensor:
        """unique_tokens: LongTensor [U, L] -> ASV vectors [U, D] (depends on sequence only)."""
        return self.asv_norm(self.nucleotide(unique_tokens)[0])

    def encode_samples(self, asv_vectors: Tensor, batch: Batch) -> EncoderOutput:
        """ASV vectors [U, D] (rows of ``batch.unique_tokens``) -> the output without
        nucleotide logits: ``asv_emb`` [B, S, D], ``sample_emb`` [B, D], ``count_features`` and
        the gathered ``asv_vectors`` [B, S, D]."""
        mask = batch.asv_mask
        gathered, features = self.occurrence_inputs(asv_vectors, batch)
        asv_emb = self.sample(gathered, features, mask)  # [B, S, D]
        pooled, _ = self.pool(self.sample_layers(asv_emb, mask), mask)  # [B, D]
        return EncoderOutput(asv_emb, pooled, mask, count_features=features,
                             asv_vectors=gathered)

    def occurrence_inputs(self, asv_vectors: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """ASV vectors [U, D] -> what each occurrence brings before context enters: its ASV
        vector [B, S, D] and its count features [B, S, F] (both 0 at padding)."""
        mask = batch.asv_mask
        gathered = asv_vectors[batch.asv_inverse] * mask.unsqueeze(-1).to(asv_vectors.dtype)
        return gathered, self.sample.count_input(batch.counts, mask).to(asv_vectors.dtype)

    def forward(self, batch: Batch, mask_rate: float = 0.0,
                generator: torch.Generator | None = None) -> EncoderOutput:
        """Encode a batch; with ``mask_rate > 0`` also return masked-nucleotide logits.

        Parameters
        ----------
        batch : Batch
            ``unique_tokens`` [U, L], ``asv_inverse``/``asv_mask``/``counts`` [B, S].
        mask_rate : float
            Fraction of real nucleotides hidden (training objective only; 0 at evaluation).
        generator : torch.Generator, optional
            Randomness for the mask.

        Returns
        -------
        EncoderOutput
        """
        tokens = batch.unique_tokens.long()
        nuc_targets = None
        if mask_rate > 0:
            tokens, nuc_targets = mask_nucleotides(tokens, mask_rate, generator)
        asv_vectors, hidden = self.nucleotide(tokens)  # [U, D], [U, L, D]
        out = self.encode_samples(self.asv_norm(asv_vectors), batch)
        if mask_rate > 0:
            out.nuc_logits = self.nucleotide.nucleotide_logits(hidden, tokens.shape[1])
            out.nuc_targets = nuc_targets  # [U, L, V], [U, L]
        return out
