"""Pretraining objective: pair loss by hand, masked loss only on masked positions, unmasked eval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aam.config import DataConfig, PretrainConfig
from aam.models.pretrain import PretrainModel
from aam.training.pretrain import PretrainObjective, masked_nucleotide_loss, pair_mse
from test_encoder import TINY, make_batch

CFG = PretrainConfig(data=DataConfig(batch_size=4), model=TINY)


def test_pair_mse_uses_each_pair_once():
    predicted = torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.0, 0.2], [1.0, 0.2, 0.0]])
    true = torch.tensor([[9.0, 0.3, 0.0], [0.3, 9.0, 0.2], [0.0, 0.2, 9.0]])  # diagonal ignored
    assert pair_mse(predicted, true).item() == pytest.approx((0.2**2 + 1.0**2 + 0.0) / 3)
    assert pair_mse(predicted[:1, :1], true[:1, :1]).item() == 0.0


def test_masked_loss_only_counts_masked_positions():
    logits = torch.zeros(1, 3, 6)
    logits[0, 0, 2] = 10.0  # confident and right at the one masked position
    logits[0, 1, 4] = -10.0  # would be wrong, but position 1 is not masked
    targets = torch.tensor([[2, -100, -100]])
    loss, correct, n = masked_nucleotide_loss(logits, targets)
    assert (correct, n) == (1, 1) and loss.item() < 1e-3
    loss, correct, n = masked_nucleotide_loss(logits, torch.full((1, 3), -100))
    assert (correct, n, loss.item()) == (0, 0, 0.0)


def test_validation_uses_unmasked_input():
    model = PretrainModel(CFG).eval()
    batches = [make_batch(seed=1), make_batch(seed=2)]
    no_mask = PretrainObjective(0.0, 1.0).evaluate(model, batches)
    masked = PretrainObjective(0.5, 1.0).evaluate(model, batches)
    assert masked["val_loss"] == no_mask["val_loss"]
    assert "val_nuc_accuracy" in masked and "val_nuc_accuracy" not in no_mask
    assert 0.0 < masked["val_most_frequent_base_rate"] <= 1.0


def test_full_matrix_validation_compares_all_pairs():
    model = PretrainModel(CFG).eval()
    batch = make_batch()
    full = batch.distances.numpy().astype(np.float64)
    with torch.no_grad():
        by_batch = PretrainObjective(0.0, 1.0).evaluate(model, [batch])
        objective = PretrainObjective(0.0, 1.0, distances=full)
        by_matrix = objective.evaluate(model, [batch])
        expected = pair_mse(model(batch).distances, batch.distances).item()
    assert by_matrix["val_loss"] == pytest.approx(by_batch["val_loss"]) == pytest.approx(expected)
    assert len(objective.last_pairs[0]) == 6  # 4 samples -> 6 pairs
    assert not math.isnan(by_matrix["val_spearman"])
    assert "distances/predicted_vs_true" in objective.figures()


def test_pretraining_sample_path_has_no_dropout_noise():
    cfg = PretrainConfig(data=DataConfig(batch_size=4), model=TINY.__class__(
        **{**TINY.__dict__, "dropout": 0.5}))
    model = PretrainModel(cfg).train()
    batch = make_batch()
    vectors = torch.randn(batch.unique_tokens.shape[0], 16)
    first = model.encoder.encode_samples(vectors, batch).sample_emb
    torch.testing.assert_close(model.encoder.encode_samples(vectors, batch).sample_emb, first)
    tokens = batch.unique_tokens
    assert not torch.equal(model.encoder.encode_asvs(tokens), model.encoder.encode_asvs(tokens))
