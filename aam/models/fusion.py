"""Categorical fusion strategies: one registry, one interface.

Every strategy maps ``(asv_emb [B,S,D], asv_mask [B,S], cat_emb [B,C,D])`` to
``FusionOut(pooled [B,D], extras, attention)``. A new strategy is one class plus
``@register_fusion``; nothing outside this module compares fusion names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from aam.config import FusionConfig
from aam.errors import InputError
from aam.fusion_names import FUSION_NAMES, check_fusion_name
from aam.models.heads import MaskedAttentionPool

FUSIONS: dict[str, type["Fusion"]] = {}
TOKENS_PER_COLUMN = 4  # metadata tokens per categorical column for the attention strategies


@dataclass
class FusionOut:
    """Output of every fusion.

    Attributes
    ----------
    pooled : FloatTensor [B, D]          the fused sample vector
    extras : dict[str, Tensor]           per-sample diagnostics (a gate, a share of attention),
                                         each logged as its mean and spread
    attention : FloatTensor [B, H, S, T] or None   a fusion whose ASV positions attend to the
        metadata tokens declares their weights here (zero at padding positions); the logs
        report their entropy, TensorBoard and ``aam explain`` the weights per category
    """

    pooled: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    attention: Tensor | None = None


def register_fusion(name: str) -> Callable[[type], type]:
    """Class decorator adding a fusion strategy to ``FUSIONS`` under ``name``."""

    if name not in FUSION_NAMES:
        raise ValueError(f"fusion {name!r} is not in aam.fusion_names.FUSION_NAMES; add it there")

    def deco(cls: type) -> type:
        FUSIONS[name] = cls
        cls.name = name
        return cls

    return deco


class Fusion(nn.Module):
    """Base class: ``forward(asv_emb, asv_mask, cat_emb) -> FusionOut``.

    A strategy is registered with :func:`register_fusion` and documents itself in ``GUIDE``:
    rows ``(rank, question, flags, notes)`` of ``aam train --categorical-help`` (ordered by
    rank) and of the README's table, so a new fusion is its class, its test and the docs.

    Parameters
    ----------
    cfg : FusionConfig
        ``cardinalities`` gives the number of categorical columns ``C``.
    dim : int
        Model width ``D``.
    """

    name = ""

    GUIDE: tuple = ()

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__()
        self.n_columns = len(cfg.cardinalities)
        self.dim = dim

    def forward(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> FusionOut:
        raise NotImplementedError


def build_fusion(cfg: FusionConfig, dim: int) -> Fusion:
    """Build the strategy named ``cfg.name``.

    Raises
    ------
    InputError
        For an unknown name (listing the known ones) or settings the strategy cannot use.
    """
    check_fusion_name(cfg.name)
    return FUSIONS[cfg.name](cfg, dim)


def _check_heads(heads: int, dim: int, name: str) -> None:
    if dim % heads:
        raise InputError(
            f"--cross-attn-heads ({heads}) must divide embedding_dim ({dim}) for fusion "
            f"'{name}'; choose a divisor of {dim}, e.g. {_largest_divisor(dim, heads)}."
        )


def _largest_divisor(dim: int, at_most: int) -> int:
    return max(h for h in range(1, at_most + 1) if dim % h == 0)


class MetadataTokens(nn.Module):
    """Splits each column's embedding into ``k`` learned tokens: [B, C, D] -> [B, C*k, D].

    Several keys per sample let each ASV position weight the metadata differently; a single key
    would make softmax attention give every position the same update.
    """

    def __init__(self, n_columns: int, dim: int, k: int = TOKENS_PER_COLUMN) -> None:
        super().__init__()
        self.k = k
        self.split = nn.Linear(dim, k * dim)
        self.token_pos = nn.Parameter(torch.randn(n_columns * k, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, cat_emb: Tensor) -> Tensor:
        b, c, d = cat_emb.shape
        tokens = self.split(cat_emb).reshape(b, c * self.k, d)  # [B, C*k, D]
        return self.norm(tokens + self.token_pos)


@register_fusion("concat")
class ConcatFusion(Fusion):
    """Pooled sequence vector concatenated with every category embedding, then Linear to D."""

    # rank, question, flags, notes: rows of `aam train --categorical-help` and the README table
    GUIDE = (
        (10, "Is the effect of the metadata simple (a category shifts the target a bit)?",
         "--categorical-fusion concat",
         "pooled sequence vector + category embeddings -> Linear; cheap, a strong default"),
        (20, "Does each category mainly shift or stretch the prediction (e.g. per-site "
         "offsets)?", "--categorical-fusion concat --conditional-output-scaling COLUMN",
         "a learned per-category scale and shift of the prediction, initialised to 1 and 0; "
         "with --target-transform zscore-category --normalize-by COLUMN the shift is already "
         "removed, so scaling the same column is redundant"),
    )

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__(cfg, dim)
        self.pool = MaskedAttentionPool(dim)
        self.project = nn.Linear((1 + self.n_columns) * dim, dim)

    def forward(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> FusionOut:
        pooled = self.pool(asv_emb, asv_mask)  # [B, D]
        flat = torch.cat([pooled, cat_emb.flatten(1)], dim=-1)  # [B, (1+C)*D]
        return FusionOut(self.project(flat))


@register_fusion("add")
class AddFusion(Fusion):
    """The summed category embeddings are added to every ASV position, then pooled."""

    GUIDE = ((90, "None of these?", "--categorical-fusion add",
              "sums the category embeddings onto every ASV position"),)

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__(cfg, dim)
        self.pool = MaskedAttentionPool(dim)

    def forward(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> FusionOut:
        x = asv_emb + cat_emb.sum(dim=1, keepdim=True)  # [B, S, D]
        return FusionOut(self.pool(x, asv_mask))


@register_fusion("gmu")
class GatedFusion(Fusion):
    """Gated multimodal unit on the pooled sequence vector and the metadata vector.

    ``h_s = tanh(W_s s)``, ``h_m = tanh(W_m m)``, ``z = sigmoid(W_z [s; m])``,
    ``out = z * h_s + (1 - z) * h_m``. The gate ``z`` [B, D] is returned in ``extras["gate"]``
    (its mean is the share of the sequence modality).

    References
    ----------
    Arevalo, J., Solorio, T., Montes-y-Gomez, M., Gonzalez, F. A. (2017). Gated Multimodal Units
    for Information Fusion. ICLR 2017 workshop, arXiv:1702.01992.
    """

    GUIDE = ((30, "Should the model decide per sample how much to trust sequences vs metadata?",
              "--categorical-fusion gmu",
              "gated multimodal unit; gate values are logged to TensorBoard"),)

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__(cfg, dim)
        self.pool = MaskedAttentionPool(dim)
        self.meta = nn.Linear(self.n_columns * dim, dim)
        self.seq_proj = nn.Linear(dim, dim)
        self.meta_proj = nn.Linear(dim, dim)
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> FusionOut:
        seq = self.pool(asv_emb, asv_mask)  # [B, D]
        meta = self.meta(cat_emb.flatten(1))  # [B, D]
        gate = torch.sigmoid(self.gate(torch.cat([seq, meta], dim=-1)))  # [B, D]
        out = gate * torch.tanh(self.seq_proj(seq)) + (1 - gate) * torch.tanh(self.meta_proj(meta))
        return FusionOut(out, {"gate": gate})


@register_fusion("cross-attention")
class CrossAttentionFusion(Fusion):
    """Each ASV position attends to the metadata tokens (``TOKENS_PER_COLUMN`` per column).

    ``FusionOut.attention`` holds the per-position weights [B, heads, S, T]; padding positions
    are zero.
    """

    GUIDE = ((40, "Do categories change which ASVs matter (position-specific effects, e.g. a "
              "category x clade interaction)?",
              "--categorical-fusion cross-attention [--cross-attn-heads 8]",
              "every ASV attends to several tokens per categorical column; the attention "
              "weights reach TensorBoard as an image (heads x category tokens); heads must "
              "divide the embedding dimension"),)

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__(cfg, dim)
        _check_heads(cfg.cross_attn_heads, dim, "cross-attention")
        self.tokens = MetadataTokens(self.n_columns, dim)
        self.attn = nn.MultiheadAttention(dim, cfg.cross_attn_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.pool = MaskedAttentionPool(dim)

    def _attend(self, asv_emb: Tensor, cat_emb: Tensor) -> tuple[Tensor, Tensor]:
        meta = self.tokens(cat_emb)  # [B, T, D]
        update, weights = self.attn(asv_emb, meta, meta, need_weights=True,
                                    average_attn_weights=False)  # [B,S,D], [B,H,S,T]
        return update, weights

    def attention_weights(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> Tensor:
        """Weights of each ASV position over the metadata tokens: [B, heads, S, T]."""
        _, weights = self._attend(asv_emb, cat_emb)
        return weights * asv_mask[:, None, :, None].to(weights.dtype)

    def forward(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> FusionOut:
        update, weights = self._attend(asv_emb, cat_emb)
        x = self.norm(asv_emb + update)  # [B, S, D]
        weights = weights * asv_mask[:, None, :, None].to(weights.dtype)
        return FusionOut(self.pool(x, asv_mask), attention=weights)


@register_fusion("perceiver")
class PerceiverFusion(Fusion):
    """Learned latents attend to the ASV + metadata tokens (padding masked), then self-attend.

    Each latent's query is shifted by a projection of the sample's category embeddings, so what
    a latent reads from the ASVs depends on the categories (a category x microbe interaction);
    the metadata tokens are also among the inputs it reads. Cost is linear in the number of ASVs
    S (``perceiver_num_latents`` queries). The pooled vector is the mean of the latents.
    """

    GUIDE = ((50, "Are samples very rich (thousands of ASVs, large --token-limit)?",
              "--categorical-fusion perceiver [--perceiver-num-latents 4 "
              "--perceiver-num-layers 1]",
              "learned latents read the ASV and metadata tokens; cost grows linearly with "
              "ASVs"),)

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__(cfg, dim)
        _check_heads(cfg.cross_attn_heads, dim, "perceiver")
        heads = cfg.cross_attn_heads
        self.latents = nn.Parameter(torch.randn(cfg.perceiver_num_latents, dim) * 0.02)
        self.query_shift = nn.Linear(self.n_columns * dim, cfg.perceiver_num_latents * dim)
        self.tokens = MetadataTokens(self.n_columns, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(cfg.perceiver_num_layers)
        )
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, asv_emb: Tensor, asv_mask: Tensor, cat_emb: Tensor) -> FusionOut:
        b = asv_emb.shape[0]
        meta = self.tokens(cat_emb)  # [B, T, D]
        inputs = self.input_norm(torch.cat([asv_emb, meta], dim=1))  # [B, S+T, D]
        real = torch.cat([asv_mask, torch.ones(meta.shape[:2], dtype=torch.bool,
                                               device=meta.device)], dim=1)  # [B, S+T]
        shift = self.query_shift(cat_emb.flatten(1)).reshape(b, *self.latents.shape)
        latents = self.latents.unsqueeze(0) + shift  # [B, N, D]: queries conditioned on metadata
        update, weights = self.cross(latents, inputs, inputs, key_padding_mask=~real,
                                     need_weights=True)  # [B, N, D], [B, N, S+T]
        x = latents + update
        for layer in self.self_layers:
            x = layer(x)
        meta_share = weights[..., asv_emb.shape[1]:].sum(-1)  # [B, N] attention on metadata
        return FusionOut(self.out_norm(x).mean(dim=1), {"metadata_attention": meta_share})
