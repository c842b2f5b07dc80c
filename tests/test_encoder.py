"""Encoder behaviour: shapes, padding never matters, dedup equals per-position encoding."""

from __future__ import annotations

import torch

from aam.config import ModelConfig, PretrainConfig, DataConfig
from aam.data.batch import Batch
from aam.data.tokens import MASK, PAD
from aam.models.encoder import AAMEncoder, mask_nucleotides
from aam.models.pretrain import PretrainModel

TINY = ModelConfig(embedding_dim=16, attention_heads=2, nucleotide_layers=1, asv_layers=1,
                   sample_layers=1, dropout=0.0, ff_mult=2, max_bp=12)


def make_batch(n_samples=4, n_asvs=5, length=10, n_unique=6, seed=0) -> Batch:
    """A hand-built batch: sample b has n_asvs - b real ASVs (the rest padding)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 5, (n_unique, length), generator=g)
    tokens[:, length - 2:] = PAD  # every ASV ends with padding
    lengths = torch.tensor([max(1, n_asvs - b) for b in range(n_samples)])
    mask = torch.arange(n_asvs)[None] < lengths[:, None]
    inverse = torch.randint(0, n_unique, (n_samples, n_asvs), generator=g) * mask
    counts = torch.randint(1, 50, (n_samples, n_asvs), generator=g).float() * mask
    distances = torch.rand(n_samples, n_samples, generator=g)
    distances = (distances + distances.T) / 2 * (1 - torch.eye(n_samples))
    return Batch(
        sample_ids=[f"S{i}" for i in range(n_samples)], sample_index=torch.arange(n_samples),
        asv_index=torch.where(mask, inverse, -1), asv_mask=mask, counts=counts,
        unique_tokens=tokens, unique_asv_index=torch.arange(n_unique), asv_inverse=inverse,
        distances=distances,
    )


def test_shapes_and_finite():
    batch = make_batch()
    out = AAMEncoder(TINY).eval()(batch, mask_rate=0.3)
    assert out.asv_emb.shape == (4, 5, 16)
    assert out.sample_emb.shape == (4, 16)
    assert out.nuc_logits.shape == (6, 10, 6)
    assert torch.isfinite(out.asv_emb).all() and torch.isfinite(out.sample_emb).all()
    assert (out.asv_emb[~batch.asv_mask] == 0).all()


def test_padding_contents_do_not_change_outputs():
    model = AAMEncoder(TINY).eval()
    batch = make_batch()
    ref = model(batch)
    # change everything at padded ASV positions (index, counts) and add a padding ASV column
    pad = ~batch.asv_mask
    changed = Batch(**{**batch.__dict__})
    changed.counts = batch.counts + pad * 1000.0
    changed.asv_inverse = torch.where(pad, torch.full_like(batch.asv_inverse, 5),
                                      batch.asv_inverse)
    changed.asv_mask = torch.cat([batch.asv_mask, torch.zeros(4, 2, dtype=torch.bool)], 1)
    changed.asv_inverse = torch.cat([changed.asv_inverse, torch.full((4, 2), 3)], 1)
    changed.counts = torch.cat([changed.counts, torch.full((4, 2), 7.0)], 1)
    out = model(changed)
    torch.testing.assert_close(out.sample_emb, ref.sample_emb)
    torch.testing.assert_close(out.asv_emb[:, :5][batch.asv_mask], ref.asv_emb[batch.asv_mask])


def test_padded_nucleotides_do_not_change_asv_vectors():
    model = AAMEncoder(TINY).eval()
    tokens = make_batch().unique_tokens
    longer = torch.cat([tokens, torch.zeros(6, 2, dtype=tokens.dtype)], 1)  # more padding
    torch.testing.assert_close(model.encode_asvs(longer), model.encode_asvs(tokens))


def test_all_padding_sample_is_finite():
    batch = make_batch()
    batch.asv_mask[0] = False
    batch.counts[0] = 0
    out = AAMEncoder(TINY).eval()(batch)
    assert torch.isfinite(out.sample_emb).all()
    assert (out.sample_emb[0] == 0).all()


def test_asv_order_does_not_matter():
    model = AAMEncoder(TINY).eval()
    batch = make_batch(n_samples=1, n_asvs=5)
    perm = torch.tensor([[3, 0, 4, 1, 2]])
    shuffled = Batch(**{**batch.__dict__})
    shuffled.asv_inverse = batch.asv_inverse.gather(1, perm)
    shuffled.counts = batch.counts.gather(1, perm)
    torch.testing.assert_close(model(shuffled).sample_emb, model(batch).sample_emb)


def test_dedup_equals_encoding_every_position():
    model = AAMEncoder(TINY).eval()
    batch = make_batch()
    flat = batch.asv_inverse.reshape(-1)
    undup = Batch(**{**batch.__dict__})
    undup.unique_tokens = batch.unique_tokens[flat]  # one row per position, duplicates kept
    undup.unique_asv_index = batch.unique_asv_index[flat]
    undup.asv_inverse = torch.arange(flat.numel()).reshape(batch.asv_inverse.shape)
    torch.testing.assert_close(model(undup).sample_emb, model(batch).sample_emb)
    torch.testing.assert_close(model(undup).asv_emb, model(batch).asv_emb)


def test_masking_only_real_nucleotides():
    tokens = make_batch().unique_tokens
    masked, targets = mask_nucleotides(tokens, 0.5, torch.Generator().manual_seed(1))
    selected = targets != -100
    assert selected.any()
    assert not selected[tokens == PAD].any()
    assert (targets[selected] == tokens[selected]).all()
    assert (masked[~selected] == tokens[~selected]).all()
    assert (masked[selected] == MASK).float().mean() > 0.5


def test_pretrain_model_distances_symmetric():
    cfg = PretrainConfig(data=DataConfig(batch_size=4), model=TINY)
    out = PretrainModel(cfg).eval()(make_batch())
    assert out.distances.shape == (4, 4)
    torch.testing.assert_close(out.distances, out.distances.T)
    assert (out.distances.diagonal() == 0).all() and (out.distances + torch.eye(4) > 0).all()


def test_every_patch_size_predicts_every_base_and_ignores_padding():
    from dataclasses import replace

    batch = make_batch()
    for patch in (1, 3, 4):
        model = AAMEncoder(replace(TINY, nucleotide_patch=patch)).eval()
        out = model(batch, mask_rate=0.3)
        assert out.nuc_logits.shape == (6, 10, 6)  # one row of logits per base, not per patch
        longer = torch.cat([batch.unique_tokens, torch.zeros(6, 2, dtype=torch.long)], 1)
        torch.testing.assert_close(model.encode_asvs(longer),
                                   model.encode_asvs(batch.unique_tokens))


def test_count_features_are_log1p_clr_and_relative_abundance():
    """log1p(count) grows with sequencing depth; the CLR and the relative abundance do not (a
    sample sequenced ten times deeper gets the same ones); padding stays 0."""
    from aam.models.encoder import COUNT_FEATURES, count_features

    counts = torch.tensor([[5.0, 50.0, 500.0, 0.0], [1.0, 1.0, 2.0, 7.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    feats = count_features(counts, mask)
    assert COUNT_FEATURES == ("log1p", "clr", "relative") and feats.shape == (2, 4, 3)
    deeper = count_features(counts * 10, mask)
    torch.testing.assert_close(deeper[..., 1:], feats[..., 1:])
    assert not torch.allclose(deeper[..., 0], feats[..., 0])
    assert (feats[0, 3] == 0).all()
    assert feats[0, 0, 1] < feats[0, 1, 1] < feats[0, 2, 1]  # rises with abundance
    torch.testing.assert_close(feats[1, :, 2], torch.tensor([1.0, 1.0, 2.0, 7.0]) / 11)


def test_an_asv_at_a_zero_count_is_at_the_attribution_baseline():
    """The integrated-gradients baseline is what a count of 0 gives (the sample's CLR centre
    kept), so an absent ASV and the baseline agree."""
    from aam.explain.attribution import zero_count_features
    from aam.models.encoder import count_features

    feats = count_features(torch.tensor([[0.0, 30.0, 70.0]]), torch.ones(1, 3, dtype=torch.bool))
    base = zero_count_features(feats)
    torch.testing.assert_close(base[0, 0], feats[0, 0])
    assert (base[0, 1:, [0, 2]] == 0).all()
