"""The fitted start reads ASV vectors that fine-tuning does not move (abundance_head_encoder):
a frozen sequence encoder (default) or a frozen snapshot of it; and predictors saved before
the snapshot existed (format 4) load as the model they were."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aam.models.predictor import Predictor
from aam.training.checkpoint import FORMAT_VERSION
from aam.training.checkpoint_formats import OLDEST_FORMAT
from aam.training.head_fit import fit_abundance_head
from test_linear_start import _cfg, _mse
from test_predictor import tiny_batch

CPU = torch.device("cpu")


def _batches(n: int, seed: int) -> list:
    """Tiny batches whose ASVs have their own global indices (one sequence per index, as in
    prepared data) and a target with a category effect."""
    out = []
    for i in range(n):
        batch = tiny_batch(8, 6, seed=seed + i)
        index = batch.unique_asv_index + 7 * (seed + i)
        target = batch.target + batch.cat_ids[:, 0].float()
        out.append(dataclasses.replace(batch, unique_asv_index=index, target=target))
    return out


def _fitted(mode: str) -> tuple[Predictor, list]:
    torch.manual_seed(0)
    model = Predictor(_cfg("gmu", abundance_head_encoder=mode))
    train, val = _batches(12, 0), _batches(4, 100)
    fit_abundance_head(model, train, val, _mse, CPU)
    for module in model.linear_start():  # as aam train does
        module.requires_grad_(False)
    return model, train


@torch.no_grad()
def _start(model: Predictor, batches) -> torch.Tensor:
    """The fitted start's part of the prediction (abundance head + category effects)."""
    model.eval()
    out = []
    for batch in batches:
        enc = model.encode(batch)
        part = model.abundance_head(model.start_vectors(batch, enc), enc.count_features,
                                    enc.asv_mask) + model.category_effects(batch.cat_ids)
        out.append(part)
    return torch.cat(out)


def _epoch(model: Predictor, batches, lr: float = 3e-3) -> float:
    """One epoch of Adam on every trainable parameter; the mean training MSE."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for batch in batches:
        out = model(batch)
        loss = _mse(out.prediction, batch.target) + 0.1 * out.count_pred.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("mode", ["snapshot", "frozen"])
def test_an_epoch_of_fine_tuning_leaves_the_fitted_start_unchanged(mode):
    """After an epoch that trains the encoder, the transformer path and the fusion, the start's
    part of every prediction is what it was (its inputs did not move), while the trained
    encoder did move; with the trained encoder's vectors (live) the start is scrambled."""
    model, train = _fitted(mode)
    before = _start(model, train)
    sample_before = [p.clone() for p in model.encoder.sample.parameters()]
    _epoch(model, train, lr=1e-2)
    torch.testing.assert_close(_start(model, train), before, rtol=0, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(sample_before,
                                                     model.encoder.sample.parameters()))
    if mode == "frozen":
        assert not any(p.requires_grad for p in model.encoder.nucleotide.parameters())
        assert not model.encoder.nucleotide.training  # no dropout on the start's vectors

    live, train = _fitted("live")
    before = _start(live, train)
    _epoch(live, train, lr=1e-2)
    assert (_start(live, train) - before).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["snapshot", "frozen"])
def test_the_training_loss_does_not_jump_after_the_fit(mode):
    """The first epoch's training loss stays near the fitted start's (the path starts at 0 and
    the start holds)."""
    model, train = _fitted(mode)
    with torch.no_grad():
        model.eval()
        start = sum(float(_mse(model(b).prediction, b.target)) for b in train) / len(train)
    first = _epoch(model, train)
    assert first < 1.5 * start + 0.05, (first, start)


def test_the_snapshot_is_saved_and_taken_at_the_fit():
    """The snapshot is part of the state_dict, equals the encoder's sequence part right after
    the fit, and a saved model reloads with the same predictions."""
    model, train = _fitted("snapshot")
    state = model.state_dict()
    assert any(k.startswith("start_encoder.nucleotide.") for k in state)
    assert any(k.startswith("start_encoder.asv_norm.") for k in state)
    for key, value in model.encoder.nucleotide.state_dict().items():
        assert torch.equal(state[f"start_encoder.nucleotide.{key}"], value)
    assert not any(p.requires_grad for p in model.start_encoder.parameters())
    _epoch(model, train)
    torch.manual_seed(5)
    again = Predictor(model.cfg)
    again.load_state_dict(model.state_dict(), strict=True)
    model.eval(), again.eval()
    with torch.no_grad():
        for batch in train[:2]:
            torch.testing.assert_close(again(batch).prediction, model(batch).prediction)


def test_a_format_4_predictor_loads_and_predicts_as_before():
    """A format-4 predictor (no snapshot keys; its head read the encoder's own vectors) loads
    strictly into today's model (snapshot by default) and predicts exactly as the live model
    it was; this aam still reads format 4."""
    assert OLDEST_FORMAT <= 4 < FORMAT_VERSION
    old, train = _fitted("live")
    _epoch(old, train, lr=1e-2)  # the encoder moved after the fit, as in format 4
    state = old.state_dict()
    assert not any(k.startswith("start_encoder.") for k in state)
    torch.manual_seed(3)
    new = Predictor(dataclasses.replace(old.cfg, abundance_head_encoder="snapshot"))
    new.load_state_dict(state, strict=True)
    old.eval(), new.eval()
    with torch.no_grad():
        for batch in train[:3]:
            torch.testing.assert_close(new(batch).prediction, old(batch).prediction)


def test_no_snapshot_where_nothing_moves_or_nothing_was_fitted():
    """The default freezes the sequence encoder; a frozen base: no snapshot, the encoder's
    vectors."""
    model = Predictor(_cfg("gmu"))
    assert model.start_mode == "frozen" and model.start_encoder is None
    assert not any(p.requires_grad for p in model.encoder.asv_norm.parameters())
    assert all(p.requires_grad for p in model.encoder.sample.parameters())
    model = Predictor(_cfg("gmu", freeze_base=True))
    assert model.start_encoder is None and model.start_mode == "live"


def test_a_format_4_checkpoint_resumes_with_the_encoder_it_trained(tmp_path):
    """Format-4 runs trained the whole encoder (the head read its vectors): their config loads
    with abundance_head_encoder live, so a resumed run's optimizer state still fits; format 5
    keeps what it recorded."""
    from aam.config import FinetuneConfig, from_dict, to_dict
    from aam.training.checkpoint import Checkpoint, load_checkpoint

    cfg = FinetuneConfig()
    for version, expected in ((4, "live"), (5, "frozen")):
        payload = Checkpoint("predictor", to_dict(cfg), {}, epoch=1, best_metric=0.0,
                             seed=0).to_payload()
        payload["format_version"] = version
        if version == 4:
            del payload["config"]["abundance_head_encoder"]
        torch.save(payload, tmp_path / f"{version}.pt")
        loaded = load_checkpoint(tmp_path / f"{version}.pt", "predictor").config
        assert from_dict(FinetuneConfig, loaded).abundance_head_encoder == expected


def test_a_frozen_sequence_encoder_gets_no_nucleotide_masking():
    """With the sequence encoder frozen for the fitted start, the masked-nucleotide loss has
    nothing to train: no masking (which would move the head's input), no nucleotide logits."""
    from aam.training.finetune_objective import FinetuneObjective

    cfg = _cfg("gmu", nucleotide_loss_weight=0.5, nucleotide_mask_rate=0.3)
    assert FinetuneObjective(cfg, None, None, None, None, None).mask_rate == 0.0
    snapshot = dataclasses.replace(cfg, abundance_head_encoder="snapshot")
    assert FinetuneObjective(snapshot, None, None, None, None, None).mask_rate == 0.3
    model, train = _fitted("frozen")
    model.train()
    with torch.no_grad():
        out = model(train[0], mask_rate=0.3)
    assert out.encoder.nuc_logits is None
