"""Attention blocks and pooling: padding never attends and never pools; no NaN on empty rows."""

from __future__ import annotations

import torch

from aam.models.attention import AttentionPooling, TransformerStack


def _inputs():
    x = torch.randn(3, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]).bool()
    return x, mask


def test_padding_keys_do_not_change_real_outputs():
    stack = TransformerStack(16, 2, 2, 2, 0.0).eval()
    x, mask = _inputs()
    noisy = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    out, out_noisy = stack(x, mask), stack(noisy, mask)
    torch.testing.assert_close(out[mask], out_noisy[mask])
    assert (out[~mask] == 0).all()


def test_all_padding_row_is_finite_and_zero():
    x, mask = _inputs()
    out = TransformerStack(16, 2, 1, 2, 0.0)(x, mask)
    pooled, weights = AttentionPooling(16)(out, mask)
    assert torch.isfinite(out).all() and torch.isfinite(pooled).all()
    assert (pooled[2] == 0).all() and (weights[2] == 0).all()


def test_pooling_ignores_padding_and_weights_sum_to_one():
    pool = AttentionPooling(16)
    x, mask = _inputs()
    noisy = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    pooled, weights = pool(x, mask)
    torch.testing.assert_close(pool(noisy, mask)[0], pooled)
    torch.testing.assert_close(weights[:2].sum(-1), torch.ones(2))
    assert (weights[1, 3:] == 0).all()


def test_gradient_checkpointing_gives_same_gradients():
    x, mask = _inputs()
    plain = TransformerStack(16, 2, 2, 2, 0.0)
    ckpt = TransformerStack(16, 2, 2, 2, 0.0, gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    grads = []
    for stack in (plain, ckpt):
        stack(x, mask).sum().backward()
        grads.append(stack.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
