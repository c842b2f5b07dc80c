"""Fusion registry: every strategy's shapes, padding invariance, gradients, cross-attention."""

from __future__ import annotations

import pytest
import torch

from aam.config import FusionConfig
from aam.errors import InputError
from aam.models.fusion import FUSIONS, FusionOut, build_fusion

B, S, C, D = 3, 5, 2, 16


def _cfg(name: str, **kw) -> FusionConfig:
    return FusionConfig(name=name, cardinalities=(4, 3), cross_attn_heads=2,
                        perceiver_num_latents=4, perceiver_num_layers=1, **kw)


def _inputs():
    asv_emb = torch.randn(B, S, D)
    asv_mask = torch.ones(B, S, dtype=torch.bool)
    asv_mask[1, 3:] = False
    cat_emb = torch.randn(B, C, D)
    return asv_emb, asv_mask, cat_emb


def test_registry_has_the_five_strategies():
    assert sorted(FUSIONS) == ["add", "concat", "cross-attention", "gmu", "perceiver"]


def test_unknown_fusion_lists_choices():
    with pytest.raises(InputError, match=r"Unknown fusion 'gmu2'\. Choose one of: add, concat, "
                                         r"cross-attention, gmu, perceiver\."):
        build_fusion(_cfg("gmu2"), D)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_output_shape_and_finite(name):
    fusion = build_fusion(_cfg(name), D).eval()
    out = fusion(*_inputs())
    assert isinstance(out, FusionOut)
    assert out.pooled.shape == (B, D)
    assert torch.isfinite(out.pooled).all()
    assert all(torch.isfinite(v).all() for v in out.extras.values())


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_padding_does_not_change_output(name):
    fusion = build_fusion(_cfg(name), D).eval()
    asv_emb, asv_mask, cat_emb = _inputs()
    junk = torch.randn(B, 3, D) * 100  # garbage at padded positions
    padded_emb = torch.cat([asv_emb, junk], dim=1)
    padded_mask = torch.cat([asv_mask, torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        a = fusion(asv_emb, asv_mask, cat_emb).pooled
        b = fusion(padded_emb, padded_mask, cat_emb).pooled
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_output_depends_on_categories_and_gradients_reach_them(name):
    fusion = build_fusion(_cfg(name), D)
    asv_emb, asv_mask, cat_emb = _inputs()
    cat_emb.requires_grad_(True)
    out = fusion(asv_emb, asv_mask, cat_emb).pooled
    out.sum().backward()
    assert cat_emb.grad is not None and cat_emb.grad.abs().sum() > 0
    with torch.no_grad():
        other = fusion(asv_emb, asv_mask, torch.randn(B, C, D)).pooled
    assert not torch.allclose(out.detach(), other)


def test_gmu_returns_gate_values_in_unit_interval():
    out = build_fusion(_cfg("gmu"), D)(*_inputs())
    gate = out.extras["gate"]
    assert gate.shape == (B, D)
    assert ((gate > 0) & (gate < 1)).all()


def test_cross_attention_gives_two_asvs_different_updates():
    fusion = build_fusion(_cfg("cross-attention"), D).eval()
    asv_emb, asv_mask, cat_emb = _inputs()
    weights = fusion.attention_weights(asv_emb, asv_mask, cat_emb)
    assert weights.shape == (B, 2, S, C * 4)  # several metadata tokens per column
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, S))
    assert not torch.allclose(weights[0, :, 0], weights[0, :, 1])  # positions weight differently
    update, _ = fusion._attend(asv_emb, cat_emb)
    assert (update[0, 0] - update[0, 1]).abs().max() > 1e-4


def test_cross_attention_weights_zero_at_padding():
    fusion = build_fusion(_cfg("cross-attention"), D).eval()
    asv_emb, asv_mask, cat_emb = _inputs()
    weights = fusion(asv_emb, asv_mask, cat_emb).attention
    assert weights[1, :, 3:].abs().sum() == 0


@pytest.mark.parametrize("name", ["cross-attention", "perceiver"])
def test_heads_must_divide_dim(name):
    with pytest.raises(InputError, match=r"--cross-attn-heads \(3\) must divide embedding_dim "
                                         r"\(16\).*e\.g\. 2"):
        build_fusion(FusionConfig(name=name, cardinalities=(3,), cross_attn_heads=3), D)


def test_perceiver_cost_does_not_grow_latents_with_asvs():
    fusion = build_fusion(_cfg("perceiver"), D).eval()
    long_emb = torch.randn(1, 200, D)
    out = fusion(long_emb, torch.ones(1, 200, dtype=torch.bool), torch.randn(1, C, D))
    assert out.extras["metadata_attention"].shape == (1, 4)
    assert out.pooled.shape == (1, D)
