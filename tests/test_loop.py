"""Training loop: overfitting one batch, schedule, resume after an interruption."""

from __future__ import annotations

import math

import pytest
import torch

from aam.config import DataConfig, PretrainConfig, TrainConfig
from aam.models.pretrain import PretrainModel
from aam.training.callbacks import Callback, CheckpointCallback, EarlyStopping
from aam.training.checkpoint import load_checkpoint
from aam.errors import InputError
from aam.training.loop import TrainingDiverged, fit
from aam.training.pretrain import PretrainObjective
from aam.training.schedule import build_optimizer, warmup_cosine
from test_encoder import TINY, make_batch

CFG = PretrainConfig(data=DataConfig(batch_size=4), model=TINY)


def _train_cfg(**kw) -> TrainConfig:
    base = dict(epochs=1, lr=3e-3, warmup_fraction=0.0, device="cpu", seed=3, grad_clip=1.0)
    return TrainConfig(**{**base, **kw})


def test_thirty_steps_overfit_one_batch():
    batch = make_batch()
    model = PretrainModel(CFG)
    objective = PretrainObjective(0.15, 0.1)
    first = objective.loss(model, batch)[0].item()
    result = fit(model, objective, [batch] * 30, [batch], _train_cfg())
    model.eval()
    last = objective.loss(model, batch)[1]["distance_loss"]
    assert result.history[0]["train_distance_loss"] > 0
    assert last < first / 2


def test_warmup_then_cosine():
    opt = build_optimizer(torch.nn.Linear(2, 2), _train_cfg(lr=1.0))
    sched = warmup_cosine(opt, total_steps=10, warmup_fraction=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.05


class _Interrupt(Callback):
    def __init__(self, after: int) -> None:
        self.after = after

    def on_epoch_end(self, state) -> None:
        if state.epoch == self.after:
            raise KeyboardInterrupt


def _run(tmp_path, resume=None, interrupt=None):
    torch.manual_seed(0)
    batches = [make_batch(seed=s) for s in range(3)]
    model = PretrainModel(CFG)
    cbs = [CheckpointCallback(tmp_path, "encoder", {"model": {}}, seed=3)]
    if interrupt:
        cbs.append(_Interrupt(interrupt))
    cfg = _train_cfg(epochs=4, warmup_fraction=0.25)
    return model, fit(model, PretrainObjective(0.2, 0.5), batches, batches[:2], cfg, cbs,
                      resume=resume)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    _, full = _run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", interrupt=2)
    last = load_checkpoint(tmp_path / "cut" / "last.pt", "encoder")
    assert last.epoch == 2
    _, resumed = _run(tmp_path / "cut", resume=last)
    assert [h["epoch"] for h in resumed.history] == [3, 4]
    for a, b in zip(full.history[2:], resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert resumed.best_metric == pytest.approx(full.best_metric, rel=1e-4)


def test_early_stopping_stops_after_patience():
    batch = make_batch()
    objective = PretrainObjective(0.0, 0.0)
    objective.evaluate = lambda model, loader: {"val_loss": 1.0}  # never improves after epoch 1
    result = fit(PretrainModel(CFG), objective, [batch], [batch], _train_cfg(epochs=10),
                 [EarlyStopping(2)])
    assert result.epochs_run == 3 and result.stopped_early and result.best_epoch == 1


def test_validate_start_makes_the_starting_weights_a_candidate():
    """When no epoch of training beats the start on validation, the start is the best."""
    batch = make_batch()
    objective = PretrainObjective(0.0, 0.0)
    losses = iter([0.5, 1.0, 1.0, 1.0])
    objective.evaluate = lambda model, loader: {"val_loss": next(losses)}
    result = fit(PretrainModel(CFG), objective, [batch], [batch], _train_cfg(epochs=3),
                 validate_start=True)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert result.best_epoch == 0 and result.epochs_run == 3


class _Poison(Callback):
    """Makes every later loss NaN once ``after`` epochs are done (a diverging run)."""

    def __init__(self, batch, after: int) -> None:
        self.batch, self.after = batch, after

    def on_epoch_end(self, state) -> None:
        if state.epoch == self.after:
            self.batch.distances.fill_(math.nan)


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):
    batch = make_batch()
    cbs = [CheckpointCallback(tmp_path, "encoder", {"model": {}}, seed=3), _Poison(batch, 1)]
    with pytest.raises(TrainingDiverged) as err:
        fit(PretrainModel(CFG), PretrainObjective(0.0, 0.0), [batch, batch], [batch],
            _train_cfg(epochs=3), cbs)
    assert isinstance(err.value, InputError) and "\n" not in str(err.value)
    assert str(err.value) == (
        "training diverged: non-finite loss at epoch 2, step 3 (loss=nan). The last good "
        f"checkpoint is {tmp_path / 'last.pt'} (epoch 1); resume from it with a lower --lr.")
    last = load_checkpoint(tmp_path / "last.pt", "encoder")
    assert last.epoch == 1 and all(torch.isfinite(v).all() for v in last.model_state.values())


def test_non_finite_loss_before_any_checkpoint_says_so():
    batch = make_batch()
    batch.distances = batch.distances * math.nan
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1 .* No checkpoint was written yet"):
        fit(PretrainModel(CFG), PretrainObjective(0.0, 0.0), [batch], [batch], _train_cfg())
