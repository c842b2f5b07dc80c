"""The abundance head's fitted start: the head is linear in its last layer, the fit finds a
planted linear signal, the penalty is chosen on validation samples, and `aam train` records it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from aam.config import DataConfig, FusionConfig
from aam.models.predictor import Predictor
from aam.training.finetune import FinetunePaths, run_finetune
from aam.training.head_fit import fit_abundance_head
from aam.training.penalised_fit import PENALTIES
from finetune_fixtures import make_prepared, tiny_finetune_cfg
from test_predictor import tiny_batch, tiny_cfg


def _model(out_dim: int = 1) -> Predictor:
    torch.manual_seed(0)
    cfg = tiny_cfg(out_dim=out_dim, data=DataConfig(),
                   fusion=FusionConfig())
    return Predictor(cfg).eval()


def _batches(n: int, seed: int) -> list:
    return [dataclasses.replace(tiny_batch(8, 6, seed=seed + i), cat_ids=None) for i in range(n)]


@torch.no_grad()
def _head_parts(model, batch):
    enc = model(batch).encoder
    head = model.abundance_head
    return head, enc, head.design(enc.asv_vectors, enc.count_features, enc.asv_mask)


def test_the_head_is_its_design_times_its_output_matrix():
    model = _model(out_dim=3)
    torch.nn.init.normal_(model.abundance_head.net[-1].weight)
    torch.nn.init.normal_(model.abundance_head.net[-1].bias)
    head, enc, design = _head_parts(model, _batches(1, 0)[0])
    with torch.no_grad():
        direct = head(enc.asv_vectors, enc.count_features, enc.asv_mask)
        matrix = head.output_matrix()
        torch.testing.assert_close(design @ matrix, direct, rtol=1e-4, atol=1e-5)
        head.set_output_matrix(torch.zeros_like(matrix))
        assert not head(enc.asv_vectors, enc.count_features, enc.asv_mask).any()
        head.set_output_matrix(matrix)  # the inverse of output_matrix
        torch.testing.assert_close(head.output_matrix(), matrix)


def _plant(model, batches, truth: torch.Tensor, classes: bool) -> list:
    """Targets = the model's prediction without the head + the design times ``truth``."""
    out = []
    for batch in batches:
        _, _, design = _head_parts(model, batch)
        with torch.no_grad():
            signal = (model(batch).prediction + design @ truth)
        target = signal.argmax(-1).float() if classes else signal[:, 0]
        out.append(dataclasses.replace(batch, target=target))
    return out


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_fit_finds_a_planted_linear_signal_and_sets_the_model(task):
    classes = task == "classification"
    model = _model(out_dim=2 if classes else 1)
    k = model.cfg.out_dim
    head = model.abundance_head
    width = head.output_matrix().shape[0]
    hidden = width // (1 + head.n_features)  # H + 1 columns per term
    truth = torch.zeros(width, k)  # the number of ASVs and their total first count feature
    truth[hidden - 1, -1], truth[2 * hidden - 1, -1] = 30.0, 60.0
    train = _plant(model, _batches(40, 0), truth, classes)
    val = _plant(model, _batches(10, 1000), truth, classes)

    def loss(pred, target):
        if classes:
            return torch.nn.functional.cross_entropy(pred, target.long())
        return torch.nn.functional.mse_loss(pred[:, 0], target.to(pred.dtype))

    fit = fit_abundance_head(model, train, val, loss, torch.device("cpu"))
    assert fit.penalty in PENALTIES and (fit.n_train, fit.n_val) == (320, 80)
    assert fit.val_loss < 0.5 * fit.val_loss_before
    with torch.no_grad():  # the model now predicts what the fit reported
        preds = torch.cat([model(b).prediction for b in val]).double()
        target = torch.cat([b.target for b in val])
        assert float(loss(preds, target)) == pytest.approx(fit.val_loss, rel=1e-3, abs=1e-4)


def test_without_signal_the_strongest_penalty_keeps_the_head_near_zero():
    model = _model()
    train = [dataclasses.replace(b, target=torch.randn(8, generator=torch.Generator()
                                                        .manual_seed(i)))
             for i, b in enumerate(_batches(10, 0))]
    val = [dataclasses.replace(b, target=torch.randn(8, generator=torch.Generator()
                                                      .manual_seed(100 + i)))
           for i, b in enumerate(_batches(5, 500))]
    fit = fit_abundance_head(model, train, val, lambda p, t: torch.nn.functional.mse_loss(
        p[:, 0], t.to(p.dtype)), torch.device("cpu"))
    assert fit.chosen_by == "validation samples"  # no groups given
    assert fit.penalty >= 100.0  # noise: the validation samples choose a strong penalty
    assert fit.val_loss <= fit.val_loss_before + 0.05


def test_with_subjects_the_penalty_is_chosen_by_grouped_cv_of_the_training_samples():
    """Each subject's samples share one label drawn at random (no signal across subjects):
    cross-validation that keeps subjects whole sees that and chooses a strong penalty."""
    model = _model()
    batches = _batches(12, 0)
    gen = torch.Generator().manual_seed(3)
    per_subject = torch.randn(12, generator=gen)
    train = [dataclasses.replace(b, target=per_subject[i].repeat(8),
                                 sample_ids=[f"b{i}s{j}" for j in range(8)])
             for i, b in enumerate(batches)]
    groups = {s: s.split("s")[0] for b in train for s in b.sample_ids}  # subject = batch
    val = _batches(2, 900)
    fit = fit_abundance_head(model, train, val, lambda p, t: torch.nn.functional.mse_loss(
        p[:, 0], t.to(p.dtype)), torch.device("cpu"), groups=groups)
    assert fit.chosen_by == "grouped 5-fold CV of the training samples"
    assert fit.penalty >= 100.0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("head-fit"))


def test_aam_train_fits_the_head_by_default_and_records_it(prepared, tmp_path):
    cfg = tiny_finetune_cfg(columns=(), epochs=1)
    run_finetune(cfg, FinetunePaths(prepared, tmp_path / "fit"))
    saved = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    record = saved["abundance_head_fit"]
    assert record["penalty"] in PENALTIES and record["n_train"] + record["n_val"] == 32
    assert saved["history"][0]["epoch"] == 0  # the fitted start is a candidate for best.pt


def test_group_by_names_a_missing_column(prepared, tmp_path):
    from aam.errors import InputError

    cfg = tiny_finetune_cfg(columns=(), epochs=1, group_by="nope")
    with pytest.raises(InputError, match="--group-by column 'nope' is not in the prepared"):
        run_finetune(cfg, FinetunePaths(prepared, tmp_path / "bad"))
    assert not (tmp_path / "bad" / "model.pt").exists()


def test_group_by_subject_is_used_for_the_penalty(prepared, tmp_path, caplog):
    cfg = tiny_finetune_cfg(columns=(), epochs=1, group_by="subject")
    run_finetune(cfg, FinetunePaths(prepared, tmp_path / "cv"))
    record = json.loads((tmp_path / "cv" / "metrics.json").read_text())["abundance_head_fit"]
    assert record["chosen_by"].startswith("grouped")
    assert "give --group-by" not in caplog.text
    run_finetune(dataclasses.replace(cfg, group_by=""), FinetunePaths(prepared, tmp_path / "v"))
    assert "give --group-by SUBJECT_COLUMN" in caplog.text  # without it, the user is told


def _head_state(path):
    from aam.training.checkpoint import load_checkpoint

    state = load_checkpoint(path, "predictor").model_state
    return ({k: v for k, v in state.items() if k.startswith("abundance_head.net.2")},
            {k: v for k, v in state.items() if not k.startswith(("abundance_head.net.2",
                                                                  "head.net.4.bias"))})


def test_a_winning_fitted_start_is_refitted_on_training_and_validation_samples(prepared,
                                                                               tmp_path):
    """When validation keeps the fitted start (epoch 0; lr ~0 here so no epoch beats it),
    model.pt's head is fitted again on every training and validation sample, its penalty
    cross-validated by subject; checkpoints/best.pt and the validation metrics stay those of
    the selected model. Without --group-by (no held-out choice of the penalty left) or with
    --no-abundance-head-refit, model.pt is best.pt."""
    cfg = tiny_finetune_cfg(columns=(), epochs=1, group_by="subject",
                            lr=1e-30)
    out = tmp_path / "refit"
    run_finetune(cfg, FinetunePaths(prepared, out))
    saved = json.loads((out / "metrics.json").read_text())
    first, refit = saved["abundance_head_fit"], saved["abundance_head_refit"]
    assert saved["best_epoch"] == 0
    assert refit["n_train"] == first["n_train"] + first["n_val"] == 32
    assert refit["chosen_by"].startswith("grouped")
    assert saved["val_loss"] == pytest.approx(saved["history"][0]["val_loss"])
    assert ("model.pt's head was then fitted again on all 32 training + validation samples"
            in (out / "model-card.md").read_text())
    (best_head, best_rest), (final_head, final_rest) = (_head_state(out / "checkpoints" /
                                                                    "best.pt"),
                                                        _head_state(out / "model.pt"))
    assert any(not torch.equal(best_head[k], final_head[k]) for k in best_head)
    assert all(torch.equal(best_rest[k], final_rest[k]) for k in best_rest)

    for name, variant in (("no-groups", dataclasses.replace(cfg, group_by="")),
                          ("off", dataclasses.replace(cfg, abundance_head_refit=False))):
        run_finetune(variant, FinetunePaths(prepared, tmp_path / name))
        assert json.loads((tmp_path / name / "metrics.json").read_text())[
            "abundance_head_refit"] is None
        kept, final = (_head_state(tmp_path / name / "checkpoints" / "best.pt")[0],
                       _head_state(tmp_path / name / "model.pt")[0])
        assert all(torch.equal(kept[k], final[k]) for k in kept)


def test_fine_tuning_keeps_the_asv_vectors_a_function_of_the_sequence():
    """In training mode the encoder's ASV batch norm keeps its pretraining statistics: an ASV's
    vector (what the fitted head reads) does not depend on the other ASVs of its batch."""
    model = _model()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.train()
    tokens = _batches(1, 0)[0].unique_tokens.long()
    before = model.encoder.asv_norm.norm.running_mean.clone()
    with torch.no_grad():
        alone = model.encoder.encode_asvs(tokens[:3])
        together = model.encoder.encode_asvs(tokens)[:3]
    assert not model.encoder.asv_norm.training
    torch.testing.assert_close(model.encoder.asv_norm.norm.running_mean, before)
    torch.testing.assert_close(alone, together)


def test_a_new_encoders_asv_norm_gets_the_training_asvs_statistics():
    """Without a pretrained encoder the norm's statistics are set from the distinct ASVs of the
    training samples (each ASV once, however many batches hold it), then kept."""
    from aam.training.head_fit import calibrate_asv_norm

    model = _model()
    batches = _batches(1, 0) * 3  # the same 7 distinct ASVs in every batch
    calibrate_asv_norm(model, batches, torch.device("cpu"))
    with torch.no_grad():
        raw = model.encoder.nucleotide(batches[0].unique_tokens.long())[0]
    norm = model.encoder.asv_norm.norm
    torch.testing.assert_close(norm.running_mean, raw.mean(0))
    torch.testing.assert_close(norm.running_var, raw.var(0))


def test_a_fine_tuned_epoch_must_beat_the_fitted_start_by_a_standard_error():
    """The paired per-subject difference: a lower mean loss carried by one lucky subject does
    not clear the margin; the same mean gain spread over every subject does."""
    from aam.training.finetune_objective import paired_standard_error, unit_losses

    units = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "d1": "D"}
    start = unit_losses(["a1", "a2", "b1", "c1", "d1"], [1.0, 3.0, 1.0, 1.0, 1.0], units)
    assert start == {"A": 2.0, "B": 1.0, "C": 1.0, "D": 1.0}  # samples of a subject averaged
    lucky = {"A": 0.0, "B": 1.2, "C": 1.2, "D": 1.2}  # mean gain 0.35, all of it from A
    steady = {"A": 1.65, "B": 0.65, "C": 0.65, "D": 0.65}  # the same mean gain everywhere
    gain = 0.35
    assert paired_standard_error(lucky, start) > gain
    assert paired_standard_error(steady, start) == pytest.approx(0.0, abs=1e-12)
    assert paired_standard_error({"A": 0.5}, start) == 0.0  # one unit: no error to estimate


def test_the_selection_margin_keeps_the_fitted_start_and_survives_a_resume(prepared, tmp_path):
    """With a fitted head, every validation after the start reports a selection_loss (val_loss
    plus selection_se standard errors of its per-subject difference to the start) and the best
    epoch is chosen on it; the start's per-subject losses travel in the checkpoints, so a
    resumed run keeps the same reference. --selection-se 0 selects on val_loss alone."""
    from aam.data.prepared import load_prepared
    from aam.training.checkpoint import load_checkpoint

    cfg = tiny_finetune_cfg(columns=(), epochs=3, group_by="subject",
                            lr=3e-2)
    plain = tmp_path / "plain"
    run_finetune(dataclasses.replace(cfg, selection_se=0.0), FinetunePaths(prepared, plain))
    history = json.loads((plain / "metrics.json").read_text())["history"]
    assert not any("selection_loss" in row for row in history)
    assert json.loads((plain / "metrics.json").read_text())["best_epoch"] == min(
        history, key=lambda row: row["val_loss"])["epoch"]

    strict = tmp_path / "strict"
    run_finetune(dataclasses.replace(cfg, selection_se=1e6), FinetunePaths(prepared, strict))
    saved = json.loads((strict / "metrics.json").read_text())
    assert saved["best_epoch"] == 0
    start, *later = saved["history"]
    assert start["selection_loss"] == pytest.approx(start["val_loss"])
    assert all(row["selection_loss"] > row["val_loss"] + 1.0 for row in later)
    assert ("lower by more than 1e+06 standard error of the per-subject difference"
            in (strict / "model-card.md").read_text())
    reference = load_checkpoint(strict / "checkpoints" / "last.pt",
                                "predictor").predictor.selection_reference
    val_ids = (strict / "val_samples.txt").read_text().split()
    assert set(reference) == set(load_prepared(prepared).metadata.loc[val_ids, "subject"])

    resumed = tmp_path / "resumed"
    run_finetune(dataclasses.replace(cfg, selection_se=1e6, train=dataclasses.replace(
        cfg.train, epochs=4)), FinetunePaths(prepared, resumed,
                                             resume_from=strict / "checkpoints" / "last.pt"))
    after = json.loads((resumed / "metrics.json").read_text())
    assert after["best_epoch"] == 0
    assert after["history"][-1]["epoch"] == 4 and after["history"][-1]["selection_loss"] > (
        after["history"][-1]["val_loss"] + 1.0)
