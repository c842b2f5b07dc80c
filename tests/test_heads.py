"""Heads: pooling masks padding, category embeddings, count loss, output scaling identity init."""

from __future__ import annotations

import torch

from aam.models.heads import (CategoryEmbeddings, CountHead, MaskedAttentionPool, OutputScaling,
                              TargetEncoder, TargetHead, count_loss)


def test_pool_ignores_padding_and_returns_zero_for_empty_sample():
    pool = MaskedAttentionPool(8)
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    y = x.clone()
    y[0, 2:] = 1e3
    out_x, out_y = pool(x, mask), pool(y, mask)
    torch.testing.assert_close(out_x[0], out_y[0])
    assert torch.equal(out_x[1], torch.zeros(8))


def test_category_embeddings_shape_and_projection():
    emb = CategoryEmbeddings((3, 5), dim=16, category_dim=4)
    out = emb(torch.tensor([[0, 4], [2, 1]]))
    assert out.shape == (2, 2, 16)
    assert not torch.allclose(out[0, 0], out[1, 0])


def test_count_loss_is_zero_for_perfect_prediction_and_ignores_padding():
    counts = torch.tensor([[3.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    log_p = torch.log(torch.tensor([0.75, 0.25]) + 1e-6)
    perfect = torch.tensor([[*(log_p - log_p.mean()), 99.0]])  # CLR; padding prediction ignored
    assert count_loss(perfect, counts, mask).item() < 1e-10
    assert count_loss(torch.zeros(1, 3), counts, mask).item() > 0.1
    assert CountHead(8)(torch.randn(2, 3, 8)).shape == (2, 3)


def test_output_scaling_starts_as_identity_and_is_per_category():
    scaling = OutputScaling(3, 1)
    pred = torch.tensor([[2.0], [5.0]])
    torch.testing.assert_close(scaling(pred, torch.tensor([1, 2])), pred)
    with torch.no_grad():
        scaling.scale.weight[2] = 2.0
        scaling.shift.weight[2] = 1.0
    torch.testing.assert_close(scaling(pred, torch.tensor([1, 2])), torch.tensor([[2.0], [11.0]]))


def test_target_encoder_masks_padding_and_head_shapes():
    enc = TargetEncoder(16, 2, 1, 2, 0.0).eval()
    x = torch.randn(2, 4, 16)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    out = enc(x, mask)
    assert out.shape == (2, 4, 16) and out[0, 3].abs().sum() == 0
    x2 = x.clone()
    x2[1, 2:] = 50.0
    torch.testing.assert_close(enc(x2, mask)[1, :2], out[1, :2])
    assert TargetHead(16, 3, 0.0)(torch.randn(5, 16), torch.randn(5, 16)).shape == (5, 3)
