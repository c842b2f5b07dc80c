"""The fitted linear start: the transformer path adds exactly nothing before training, the
abundance head's random features follow the run seed whatever the fusion, and the closed-form
fit holds the categorical main effects."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from aam.config import DataConfig, FusionConfig, TrainConfig
from aam.models.fusion import FUSIONS
from aam.models.predictor import Predictor
from aam.training.finetune import FinetunePaths, run_finetune
from aam.training.head_fit import fit_abundance_head
from finetune_fixtures import make_prepared, tiny_finetune_cfg
from test_predictor import tiny_batch, tiny_cfg

CPU = torch.device("cpu")


def _mse(pred, target):
    return torch.nn.functional.mse_loss(pred[:, 0], target.to(pred.dtype))


def _cfg(fusion: str | None, seed: int = 7, **kw):
    """tiny_cfg with one fusion over (site, sex), or no categorical columns (None)."""
    train = TrainConfig(seed=seed)
    if fusion is None:
        return tiny_cfg(data=DataConfig(), fusion=FusionConfig(), train=train, **kw)
    return tiny_cfg(fusion=FusionConfig(name=fusion, cardinalities=(3, 4), cross_attn_heads=2,
                                        perceiver_num_latents=4, perceiver_num_layers=1),
                    train=train, **kw)


def _model(fusion: str | None, global_seed: int = 0, **kw) -> Predictor:
    torch.manual_seed(global_seed)
    return Predictor(_cfg(fusion, **kw)).eval()


def _batches(n: int, seed: int, columns: bool = True) -> list:
    out = []
    for i in range(n):
        batch = tiny_batch(8, 6, seed=seed + i)
        out.append(batch if columns else dataclasses.replace(batch, cat_ids=None))
    return out


def _with_target(batches, fn) -> list:
    return [dataclasses.replace(b, target=fn(b)) for b in batches]


@pytest.mark.parametrize("fusion", [None, *sorted(FUSIONS)])
def test_before_training_the_transformer_path_adds_exactly_nothing(fusion):
    """The target head's last layer starts at zero and the linear start (abundance head,
    category effects) at zero: a new model predicts exactly 0, whatever the fusion."""
    model = _model(fusion, out_dim=2)
    batch = _batches(1, 0, columns=fusion is not None)[0]
    with torch.no_grad():
        assert torch.equal(model(batch).prediction, torch.zeros(8, 2))
    assert (model.category_effects is None) == (fusion is None)


def test_the_same_seed_gives_the_same_head_features_and_start_whatever_the_fusion():
    """The abundance head's random Fourier features come from its own generator seeded with
    train.seed: the same for every fusion, without categorical columns, and whatever the global
    torch stream was; a different seed gives different ones. After the head fit, models that
    differ only in their fusion predict exactly the same at epoch 0."""
    names = sorted(FUSIONS)
    first = _model(names[0]).abundance_head.net[0]
    for fusion, global_seed in [*((n, 0) for n in names), (None, 0), (names[0], 123)]:
        layer = _model(fusion, global_seed).abundance_head.net[0]
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
    other = _model(names[0], seed=8).abundance_head.net[0]
    assert not torch.equal(other.weight, first.weight)

    gen = torch.Generator().manual_seed(0)
    effect = torch.tensor([0.0, 1.5, -1.0])

    def target(batch):
        total = batch.counts.sum(1)
        noise = 0.1 * torch.randn(len(total), generator=gen)
        return effect[batch.cat_ids[:, 0]] + total / total.mean() + noise

    train, val = _with_target(_batches(12, 0), target), _with_target(_batches(3, 500), target)
    predictions = {}
    for fusion in names:
        model = _model(fusion)
        fit_abundance_head(model, train, val, _mse, CPU)
        with torch.no_grad():
            predictions[fusion] = torch.cat([model(b).prediction for b in val])
    for fusion in names[1:]:
        assert torch.equal(predictions[fusion], predictions[names[0]]), fusion


def test_category_effects_are_linear_in_their_one_hot_design_and_unseen_gets_nothing():
    model = _model("concat")
    effects = model.category_effects
    cat_ids = tiny_batch(8, 6, seed=3).cat_ids
    design = effects.design(cat_ids)
    assert design.shape == (8, 2 + 3)  # categories 1..K-1 of columns of cardinality 3 and 4
    matrix = torch.randn(5, 1)
    effects.set_output_matrix(matrix)
    torch.testing.assert_close(effects.output_matrix(), matrix)
    torch.testing.assert_close(effects(cat_ids), design @ matrix)
    assert all(not table.weight[0].any() for table in effects.tables)  # unseen: no effect
    unseen = torch.zeros(2, 2, dtype=torch.long)
    assert not effects(unseen).any()


def test_a_predictor_saved_before_the_category_effects_loads_with_none():
    """State dicts written before the category effects existed (format 4) have none of their
    keys: they load strictly, as the model they were (zero effects). Other missing keys still
    fail."""
    source = _model("gmu")
    state = {k: v for k, v in source.state_dict().items()
             if not k.startswith("category_effects.")}
    model = _model("gmu", global_seed=1)
    torch.nn.init.normal_(model.category_effects.tables[0].weight)
    model.load_state_dict(state, strict=True)
    assert all(not table.weight.any() for table in model.category_effects.tables)
    broken = {k: v for k, v in state.items() if k != "head.net.4.bias"}
    with pytest.raises(RuntimeError, match="head.net.4.bias"):
        model.load_state_dict(broken, strict=True)


def _one_column_batches(n: int, seed: int, effect: torch.Tensor, noise: float = 0.0) -> list:
    """Batches whose first categorical column takes categories 1..3 and whose target is that
    category's ``effect`` (+ noise)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        batch = tiny_batch(8, 6, seed=seed + i)
        site = torch.randint(1, 3, (8,), generator=gen)
        cat_ids = torch.stack([site, batch.cat_ids[:, 1]], dim=1)
        target = effect[site] + noise * torch.randn(8, generator=gen)
        out.append(dataclasses.replace(batch, cat_ids=cat_ids, target=target))
    return out


def test_the_fit_holds_the_categorys_main_effect():
    """A target that is a category's effect alone is fitted almost exactly (the head's
    features cannot tell the categories apart, the one-hot columns can), and shuffling that
    column then moves the predictions by about the effect's spread. The fit records its
    one-hot columns."""
    effect = torch.tensor([0.0, 2.0, -1.0])
    train = _one_column_batches(20, 0, effect)
    val = _one_column_batches(5, 1000, effect)
    model = _model("concat")
    fit = fit_abundance_head(model, train, val, _mse, CPU)
    assert fit.n_category_features == 5
    target = torch.cat([b.target for b in val])
    with torch.no_grad():
        pred = torch.cat([model(b).prediction[:, 0] for b in val])
        shuffled = torch.cat([model(dataclasses.replace(
            b, cat_ids=b.cat_ids[torch.randperm(8, generator=torch.Generator().manual_seed(i))])
        ).prediction[:, 0] for i, b in enumerate(val)])
    r2 = 1 - float((pred - target).pow(2).sum() / (target - target.mean()).pow(2).sum())
    assert r2 > 0.99
    moved = (shuffled - pred).pow(2).mean().sqrt()
    assert moved > 0.5 * target.std()
    assert not model.category_effects.tables[0].weight[0].any()


def test_without_categorical_columns_the_fit_has_no_category_columns():
    model = _model(None)
    gen = torch.Generator().manual_seed(0)
    train = _with_target(_batches(6, 0, columns=False), lambda b: torch.randn(8, generator=gen))
    val = _with_target(_batches(2, 50, columns=False), lambda b: torch.randn(8, generator=gen))
    fit = fit_abundance_head(model, train, val, _mse, CPU)
    assert model.category_effects is None and fit.n_category_features == 0
    assert not any(k.startswith("category_effects") for k in model.state_dict())


def test_the_logistic_fit_holds_the_categorys_main_effect():
    """Class logits: the L2-logistic fit gets the class from the category."""
    effect = torch.tensor([0.0, 1.0, 0.0])  # the class is the category (1 -> 1, 2 -> 0)
    train = _one_column_batches(12, 0, effect)
    val = _one_column_batches(3, 900, effect)
    model = _model("concat", out_dim=2)

    def loss(pred, target):
        return torch.nn.functional.cross_entropy(pred, target.long())

    fit = fit_abundance_head(model, train, val, loss, CPU)
    assert fit.val_loss < 0.2 * fit.val_loss_before
    with torch.no_grad():
        pred = torch.cat([model(b).prediction.argmax(-1) for b in val])
    assert torch.equal(pred, torch.cat([b.target for b in val]).long())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("linear-start"))


def test_aam_train_fits_keeps_and_refits_the_category_effects(prepared, tmp_path):
    """With categorical columns, aam train fits the category effects with the head (recorded in
    metrics.json), keeps them fixed while fine-tuning, saves them in the checkpoints, and the
    refit of a winning start fits them again on training + validation samples."""
    from aam.training.checkpoint import load_checkpoint

    cfg = tiny_finetune_cfg("gmu", columns=("category",), epochs=1, group_by="subject",
                            lr=1e-30)
    out = tmp_path / "run"
    run_finetune(cfg, FinetunePaths(prepared, out))
    saved = json.loads((out / "metrics.json").read_text())
    n_categories = len(load_checkpoint(out / "model.pt",
                                       "predictor").predictor.categorical_vocab["category"])
    assert saved["abundance_head_fit"]["n_category_features"] == n_categories
    assert saved["best_epoch"] == 0 and saved["abundance_head_refit"] is not None
    assert (f"The same fit holds the main effects of the categorical columns ({n_categories} "
            "one-hot columns)") in (out / "model-card.md").read_text()
    key = "category_effects.tables.0.weight"
    best = load_checkpoint(out / "checkpoints" / "best.pt", "predictor").model_state[key]
    final = load_checkpoint(out / "model.pt", "predictor").model_state[key]
    last = load_checkpoint(out / "checkpoints" / "last.pt", "predictor").model_state[key]
    assert best[1:].abs().sum() > 0 and not best[0].any() and not final[0].any()
    assert torch.equal(best, last)  # fixed while fine-tuning
    assert not torch.equal(best, final)  # the refit fitted them again
