"""Encoder cache of a frozen base and of prediction: the encoder is skipped once outputs are
cached, results equal the uncached model's, and the model's state_dict is untouched."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from aam.data.dataset import make_loader
from aam.data.prepared import load_prepared
from aam.models.asv_cache import EncoderCache, cached_encoder
from aam.models.predictor import Predictor
from aam.training.callbacks import Callback
from aam.training.finetune_data import build_setup, random_split, resolve_sizes
from aam.training.finetune_objective import FinetuneObjective
from aam.training.loop import fit
from aam.training.seeding import seed_everything
from finetune_fixtures import make_prepared, tiny_finetune_cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_prepared(make_prepared(tmp_path_factory.mktemp("cache"), samples=24))


class Calls:
    """Counts forward calls (and rows) of a module through a forward hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = self.rows = 0
        module.register_forward_hook(self._hook)

    def _hook(self, _module, inputs, _output) -> None:
        self.calls += 1
        self.rows += len(inputs[0])


def _setup(data, **kw):
    cfg = tiny_finetune_cfg("concat", token_limit=8, **kw)
    train_ids, val_ids = random_split(data.sample_ids, 0.25, 0)
    cfg = resolve_sizes(cfg, data, pretrained=False)
    setup = build_setup(cfg, data, train_ids, val_ids)
    seed_everything(0)
    model = Predictor(setup.cfg)
    objective = FinetuneObjective(setup.cfg, setup.transform, setup.classes, setup.groups,
                                  setup.actual)
    loaders = (make_loader(setup.train_set, 8, True, 0), make_loader(setup.val_set, 8, False, 0))
    return setup.cfg, model, objective, loaders


def _train(data, epochs=2, cache=True, **kw):
    cfg, model, objective, (train, val) = _setup(data, epochs=epochs, **kw)
    if not cache:
        model.encoder_cache = None
    nucleotide, sample = Calls(model.encoder.nucleotide), Calls(model.encoder.sample)
    per_epoch = []

    class Record(Callback):
        def on_epoch_end(self, state):
            per_epoch.append((nucleotide.calls, sample.calls))

    result = fit(model, objective, train, val, cfg.train, [Record()])
    return model, objective, result, per_epoch, nucleotide, (train, val)


def test_frozen_first_sampling_skips_the_encoder_after_the_first_epoch(data):
    model, _, _, per_epoch, nucleotide, _ = _train(data, freeze_base=True)
    (nuc1, sample1), (nuc2, sample2) = per_epoch
    assert nuc1 > 0 and sample1 > 0
    assert (nuc2, sample2) == (nuc1, sample1)  # epoch 2: not one encoder call
    distinct = len({int(a) for s in range(len(data.sample_ids))
                    for a in data.counts[s].indices})
    assert nucleotide.rows <= distinct  # every ASV through the nucleotide encoder at most once
    cache = model.encoder_cache
    assert cache.n_samples == len(data.sample_ids)  # train and validation samples
    assert cache.sample_hits > 0


def test_frozen_random_sampling_caches_asvs_only(data):
    model, _, _, per_epoch, nucleotide, _ = _train(data, freeze_base=True, asv_sampling="random")
    (_, sample1), (_, sample2) = per_epoch
    assert sample2 == 2 * sample1  # the sample encoder runs on every batch
    assert nucleotide.rows == model.encoder_cache.encoded  # each ASV encoded once
    assert model.encoder_cache.requested > nucleotide.rows
    assert model.encoder_cache.n_samples == 0


def test_cached_and_uncached_frozen_training_agree(data):
    cached = _train(data, freeze_base=True)
    plain = _train(data, freeze_base=True, cache=False)
    assert plain[4].calls > cached[4].calls
    for a, b in zip(cached[2].history, plain[2].history):
        np.testing.assert_allclose(a["train_target_loss"], b["train_target_loss"], rtol=1e-4)
        np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(cached[1].last.prediction, plain[1].last.prediction,
                               rtol=1e-4, atol=1e-5)


def test_cache_is_not_in_the_state_dict_and_strict_loading_works(data):
    model = _train(data, epochs=1, freeze_base=True)[0]
    unfrozen = Predictor(dataclasses.replace(model.cfg, freeze_base=False))
    assert unfrozen.encoder_cache is None
    assert list(model.state_dict()) == list(unfrozen.state_dict())
    unfrozen.load_state_dict(model.state_dict(), strict=True)
    assert model.encoder_cache.n_samples
    model.load_state_dict(unfrozen.state_dict(), strict=True)  # new weights: cache emptied
    assert model.encoder_cache.n_samples == 0 and model.encoder_cache.encoded == 0


def test_sample_cache_cap_falls_back_to_asv_vectors(data, caplog):
    _, model, _, (train, _) = _setup(data, freeze_base=True)
    model.encoder_cache = EncoderCache(sample_level=True, max_sample_bytes=1)
    batch = next(iter(train))
    with caplog.at_level(logging.INFO):
        capped = model.eval()(batch).prediction
    assert "sample-level encoder cache is full" in caplog.text
    assert model.encoder_cache.n_samples == 0 and model.encoder_cache.encoded > 0
    model.encoder_cache = None
    torch.testing.assert_close(capped, model(batch).prediction)


def test_a_new_asv_draw_is_not_served_a_stale_sample_output(data):
    _, model, _, (_, loader) = _setup(data, freeze_base=True, asv_sampling="random")
    model.encoder_cache = EncoderCache(sample_level=True)  # as if sampling were fixed
    loader.dataset.set_epoch(1)
    first = next(iter(loader))
    model.eval()(first)
    loader.dataset.set_epoch(2)
    second = next(iter(loader))
    assert first.sample_ids == second.sample_ids  # same samples, other ASVs
    assert not torch.equal(first.asv_index, second.asv_index)
    served = model(second).prediction
    model.encoder_cache = None
    torch.testing.assert_close(served, model(second).prediction)


def test_unfrozen_training_never_caches_but_prediction_context_does(data):
    model, _, _, _, trained_calls, (train, val) = _train(data, epochs=1)
    assert model.encoder_cache is None
    assert trained_calls.calls == len(train) + len(val)  # once per batch
    batch = next(iter(val))
    model.eval()
    nucleotide = Calls(model.encoder.nucleotide)
    with torch.no_grad():
        plain = model(batch).prediction
        with cached_encoder(model) as cache:
            first, again = model(batch).prediction, model(batch).prediction
    assert model.encoder_cache is None  # restored after the block
    assert nucleotide.calls == 2 and cache.requested == 2 * cache.encoded
    torch.testing.assert_close(first, plain)
    torch.testing.assert_close(again, plain)


def test_prediction_without_cache_turns_off_a_frozen_models_own_cache(data):
    _, model, _, (_, val) = _setup(data, freeze_base=True)
    own = model.encoder_cache
    nucleotide = Calls(model.encoder.nucleotide)
    batch = next(iter(val))
    with torch.no_grad(), cached_encoder(model, enabled=False) as cache:
        assert cache is None and model.encoder_cache is None
        model.eval()(batch), model(batch)
    assert nucleotide.calls == 2  # every forward ran the encoder
    assert model.encoder_cache is own and own.encoded == 0
