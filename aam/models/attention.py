"""Pre-norm transformer blocks and attention pooling over padded sets/sequences.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with the key padding
mask as a boolean ``attn_mask`` (dropped when nothing is padded, so the fused kernel runs); rows
whose keys are all padding stay finite (zero output). Dropout acts on the two residual branches
only, not on attention probabilities nor inside the feed-forward: CPU dropout masks are costly
(attention dropout made attention 4x slower; dropout drew a third of a frozen-base step's CPU
time, measured with ``benchmarks/``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def safe_key_mask(mask: Tensor) -> Tensor:
    """Key mask [N, T] where all-padding rows attend everywhere, so softmax never sees only -inf.

    The outputs of such rows are zeroed by the caller (they are padding anyway).
    """
    return mask | ~mask.any(dim=-1, keepdim=True)


def attention_mask(mask: Tensor) -> Tensor | None:
    """SDPA mask [N, 1, 1, T] from a key padding mask [N, T]; None when nothing is padded."""
    if bool(mask.all()):
        return None
    return safe_key_mask(mask)[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask.

    Parameters
    ----------
    dim : int
        Model width D (divisible by ``heads``).
    heads : int
        Number of attention heads.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        """x: [N, T, D]; attn_mask: from :func:`attention_mask` -> [N, T, D]."""
        n, t, d = x.shape
        qkv = self.qkv(x).view(n, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [N, H, T, D/H]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [N, H, T, D/H]
        return self.out(out.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + ff(norm(x))``; padding rows zeroed."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x: [N, T, D]; mask: BoolTensor [N, T] -> [N, T, D] (0 at padding).

        ``attn_mask`` is ``attention_mask(mask)``, computed once per stack by the caller.
        """
        x = x + self.drop(self.attn(self.norm1(x), attn_mask))
        x = x + self.drop(self.ff(self.norm2(x)))
        return x * mask.unsqueeze(-1).to(x.dtype)


class TransformerStack(nn.Module):
    """``layers`` pre-norm blocks followed by a final LayerNorm.

    Parameters
    ----------
    dim, heads, layers, ff_mult : int
        Width, heads, depth and feed-forward multiplier.
    dropout : float
        Dropout inside the blocks.
    gradient_checkpointing : bool
        Recompute block activations in the backward pass (saves memory while training).
    """

    def __init__(self, dim: int, heads: int, layers: int, ff_mult: int, dropout: float,
                 gradient_checkpointing: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, ff_mult, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.gradient_checkpointing = gradient_checkpointing

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: [N, T, D]; mask: BoolTensor [N, T] True at real positions -> [N, T, D]."""
        attn_mask = attention_mask(mask)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, attn_mask, use_reentrant=False)
            else:
                x = block(x, mask, attn_mask)
        return self.norm(x) * mask.unsqueeze(-1).to(x.dtype)


class AttentionPooling(nn.Module):
    """Learned softmax-weighted average over the real positions of each row.

    ``weights = softmax(w . x_t)`` over positions with ``mask`` True; padding gets exactly zero
    weight and a row with no real position pools to the zero vector.
    """

    def __init__(self, dim: int, normalize: bool = True) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)
        self.norm = nn.LayerNorm(dim) if normalize else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x: [N, T, D]; mask: BoolTensor [N, T] -> (pooled [N, D], weights [N, T])."""
        scores = self.score(x).squeeze(-1).float()  # [N, T]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * mask  # all-padding rows -> all zero
        pooled = torch.einsum("nt,ntd->nd", weights.to(x.dtype), x)
        return self.norm(pooled) * mask.any(-1, keepdim=True).to(x.dtype), weights
