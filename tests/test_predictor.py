"""Predictor: shapes, frozen base, count head switch, categorical gradients, output scaling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aam.config import DataConfig, FinetuneConfig, FusionConfig, ModelConfig
from aam.data.batch import Batch
from aam.errors import InputError
from aam.models.predictor import Predictor, load_encoder_state

L = 12


def tiny_cfg(**kw) -> FinetuneConfig:
    fusion = kw.pop("fusion", FusionConfig(name="cross-attention", cardinalities=(3, 4),
                                           cross_attn_heads=2))
    data = kw.pop("data", DataConfig(categorical_columns=("site", "sex")))
    model = ModelConfig(embedding_dim=16, attention_heads=2, nucleotide_layers=1, asv_layers=1,
                        sample_layers=1, ff_mult=2, max_bp=L, dropout=0.1)
    return FinetuneConfig(data=data, model=model, fusion=fusion, **kw)


def tiny_batch(b: int = 3, s: int = 5, n_cols: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    u = 7
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[-1, s - 2:] = False
    inverse = torch.randint(0, u, (b, s), generator=g) * mask
    counts = torch.randint(1, 50, (b, s), generator=g).float() * mask
    return Batch(sample_ids=[f"s{i}" for i in range(b)], sample_index=torch.arange(b),
                 asv_index=torch.where(mask, inverse, -1), asv_mask=mask, counts=counts,
                 unique_tokens=torch.randint(1, 5, (u, L), generator=g),
                 unique_asv_index=torch.arange(u), asv_inverse=inverse,
                 cat_ids=torch.randint(0, 3, (b, n_cols), generator=g),
                 target=torch.randn(b, generator=g))


def test_forward_shapes():
    model = Predictor(tiny_cfg(out_dim=3)).eval()
    out = model(tiny_batch())
    assert out.prediction.shape == (3, 3)
    assert out.count_pred.shape == (3, 5)
    assert out.attention.shape == (3, 2, 5, 8)


def test_count_head_off_is_not_built_or_computed():
    model = Predictor(tiny_cfg(count_prediction=False))
    assert model.count_head is None
    assert not any("count_head" in name for name, _ in model.named_parameters())
    assert model(tiny_batch()).count_pred is None


def test_without_categorical_columns_no_fusion_is_built():
    cfg = tiny_cfg(data=DataConfig(), fusion=FusionConfig())
    model = Predictor(cfg)
    assert model.categorical_modules() == []
    batch = dataclasses.replace(tiny_batch(), cat_ids=None)
    assert model(batch).prediction.shape == (3, 1)


def test_freeze_base_keeps_encoder_deterministic_and_categorical_params_get_gradients():
    """The target head's zero last layer gets gradients at once; after one step of it the
    category embeddings and the fusion do too."""
    model = Predictor(tiny_cfg(freeze_base=True)).train()
    assert not model.encoder.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    batch = tiny_batch()
    a, b = model(batch), model(batch)
    torch.testing.assert_close(a.encoder.asv_emb, b.encoder.asv_emb)
    a.prediction.sum().backward()
    last = model.head.net[-1].weight
    assert last.grad.abs().sum() > 0
    with torch.no_grad():
        last -= 0.1 * last.grad
    model.zero_grad()
    model(batch).prediction.sum().backward()
    cat_params = [p for m in model.categorical_modules() for p in m.parameters()]
    assert cat_params and all(p.grad is not None for p in cat_params)
    assert sum(p.grad.abs().sum() for p in cat_params) > 0
    assert all(p.grad is None for p in model.encoder.parameters())


def test_conditional_output_scaling_is_identity_at_start_and_per_category():
    cfg = tiny_cfg(fusion=FusionConfig(name="concat", cardinalities=(3, 4),
                                       conditional_output_scaling="sex"))
    model = Predictor(cfg).eval()
    batch = tiny_batch()
    base = model(batch).prediction
    with torch.no_grad():
        model.output_scaling.shift.weight += 10.0
    torch.testing.assert_close(model(batch).prediction, base + 10.0)


def test_conditional_output_scaling_column_must_be_categorical():
    cfg = tiny_cfg(fusion=FusionConfig(cardinalities=(3, 4), conditional_output_scaling="age"))
    with pytest.raises(InputError, match="column 'age' is not among --categorical-columns"):
        Predictor(cfg)


def test_encoder_state_loads_from_pretrain_model_keys():
    model = Predictor(tiny_cfg())
    source = Predictor(tiny_cfg())
    state = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    state["distance_head.weight"] = torch.zeros(2)
    load_encoder_state(model, state)
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)


def test_encoder_state_with_other_sizes_is_a_clear_error():
    model = Predictor(tiny_cfg())
    with pytest.raises(InputError, match="do not fit this model"):
        load_encoder_state(model, {"nucleotide.token_emb.weight": torch.zeros(6, 8)})


def test_abundance_head_starts_at_zero_and_reads_the_counts():
    """The abundance head adds nothing before training (zero-initialised output layer); then
    its term reads the count features, log1p(count) among them, so a sample sequenced ten times
    deeper gets another term."""
    model = Predictor(tiny_cfg(out_dim=2)).eval()
    batch = tiny_batch()
    head = model.abundance_head

    def term(b):
        enc = model.encode(b)
        return head(enc.asv_vectors, enc.count_features, b.asv_mask)

    assert torch.equal(term(batch), torch.zeros(3, 2))
    torch.nn.init.normal_(head.net[-1].weight)
    deeper = dataclasses.replace(batch, counts=batch.counts * 10)
    assert term(batch).abs().min() > 0
    assert not torch.allclose(term(deeper), term(batch))


def test_abundance_head_sums_over_asvs_so_a_missing_asv_changes_the_prediction():
    """Unlike attention pooling (an average), the head sums per-ASV terms: leaving one ASV out
    of a sample removes that ASV's term and leaves the other samples alone."""
    model = Predictor(tiny_cfg()).eval()
    torch.nn.init.normal_(model.abundance_head.net[-1].weight)
    torch.nn.init.normal_(model.abundance_head.net[-1].bias)
    batch = tiny_batch()
    enc = model.encode(batch)
    full = model.abundance_head(enc.asv_vectors, enc.count_features, batch.asv_mask)
    mask = batch.asv_mask.clone()
    mask[0, 0] = False
    fewer = model.abundance_head(enc.asv_vectors, enc.count_features, mask)
    assert not torch.allclose(fewer[0], full[0])
    torch.testing.assert_close(fewer[1:], full[1:])
