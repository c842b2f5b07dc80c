"""Checkpoints: safe loading (weights_only), kind/format checks, corrupt and malicious files."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from aam.config import DataConfig, PretrainConfig, to_dict
from aam.errors import InputError
from aam.models.pretrain import PretrainModel
from aam.training.checkpoint import (FORMAT_VERSION, Checkpoint, PredictorState,
                                     load_checkpoint, save_checkpoint)
from aam.training.checkpoint_formats import LAST_BUILDER, LAST_READER, OLDEST_FORMAT, REMOVED
from aam.training.seeding import get_rng_state, set_rng_state
from test_encoder import TINY, make_batch

CFG = PretrainConfig(data=DataConfig(batch_size=4), model=TINY)


def _payload(model, **kw):
    return Checkpoint("encoder", to_dict(CFG), model.state_dict(), epoch=3, best_metric=0.5,
                      seed=7, rng_state=get_rng_state(), **kw)


def test_round_trip_gives_identical_outputs(tmp_path):
    model = PretrainModel(CFG).eval()
    save_checkpoint(tmp_path / "encoder.pt", _payload(model))
    raw = torch.load(tmp_path / "encoder.pt", weights_only=True)  # plain data only
    assert raw["kind"] == "encoder" and raw["epoch"] == 3 and raw["config"]["model"]["max_bp"] == 12
    loaded = PretrainModel(CFG).eval()
    loaded.load_state_dict(load_checkpoint(tmp_path / "encoder.pt", "encoder").model_state)
    batch = make_batch()
    torch.testing.assert_close(loaded(batch).distances, model(batch).distances)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary


def test_rng_state_round_trip_restores_draws(tmp_path):
    model = PretrainModel(CFG)
    save_checkpoint(tmp_path / "c.pt", _payload(model))
    expected = torch.rand(3)
    set_rng_state(load_checkpoint(tmp_path / "c.pt").rng_state)
    torch.testing.assert_close(torch.rand(3), expected)


def test_wrong_kind_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _payload(PretrainModel(CFG)))
    with pytest.raises(InputError, match="is a 'encoder' checkpoint but a 'predictor'"):
        load_checkpoint(tmp_path / "c.pt", "predictor")


def test_newer_format_is_refused(tmp_path):
    payload = _payload(PretrainModel(CFG)).to_payload()
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(InputError, match="checkpoint format 99 .* Upgrade aam"):
        load_checkpoint(tmp_path / "c.pt", "encoder")


def test_truncated_file_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _payload(PretrainModel(CFG)))
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "c.pt", "encoder")


def test_not_a_checkpoint_dict_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "c.pt")
    with pytest.raises(InputError, match="is not an AAM checkpoint"):
        load_checkpoint(tmp_path / "c.pt", "encoder")


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    target = str(tmp_path / "pwned")
    torch.save({"format_version": 1, "payload": _Exploit(target)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="could run code"):
        load_checkpoint(tmp_path / "evil.pt", "encoder")
    assert not os.path.exists(target)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt", "encoder")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_format_older_than_4_fails_with_one_line_naming_the_aam_that_reads_it(tmp_path,
                                                                                 version):
    payload = _payload(PretrainModel(CFG)).to_payload()
    payload["format_version"] = version
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(InputError) as err:
        load_checkpoint(tmp_path / "old.pt", "encoder")
    assert str(err.value) == (
        f"{tmp_path / 'old.pt'} has checkpoint format {version}; this aam reads formats "
        f"{OLDEST_FORMAT}-{FORMAT_VERSION}. Retrain, or read it with {LAST_READER}.")
    assert OLDEST_FORMAT == 4 and "\n" not in str(err.value)


def test_a_format_5_encoder_with_the_old_head_name_loads_and_resumes(tmp_path):
    """Format 5 named the pretraining head ``unifrac_head``: its weights, their optimizer state
    and the running loss sums of a preempted epoch load under today's names."""
    model = PretrainModel(CFG)
    optimizer = torch.optim.AdamW(model.parameters())
    model(make_batch()).distances.sum().backward()
    optimizer.step()
    names = {id(p): n for n, p in model.named_parameters()}
    state = optimizer.state_dict()
    old = lambda name: name.replace("distance_head.", "unifrac_head.")  # noqa: E731
    optimizer_state = {
        "state": {old(names[id(p)]): state["state"][i]
                  for i, p in enumerate(model.parameters()) if i in state["state"]},
        "param_groups": [dict(g, params=[old(names[id(p)]) for p in model.parameters()])
                         for g in state["param_groups"]]}
    payload = _payload(model).to_payload()
    payload.update(format_version=5, optimizer_state=optimizer_state, resume_batch=1,
                   partial_samples=4, partial_sums={"unifrac_loss": 0.5, "loss": 1.0},
                   model_state={old(k): v for k, v in model.state_dict().items()})
    assert any(k.startswith("unifrac_head.") for k in payload["model_state"])
    torch.save(payload, tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt", "encoder")
    fresh = PretrainModel(CFG)
    fresh.load_state_dict(loaded.model_state, strict=True)
    torch.testing.assert_close(fresh.distance_head.offset, model.distance_head.offset)
    moved = set(loaded.optimizer_state["state"])
    assert "distance_head.offset" in moved and moved <= set(names.values())
    assert set(loaded.optimizer_state["param_groups"][0]["params"]) == set(names.values())
    assert loaded.partial_sums == {"distance_loss": 0.5, "loss": 1.0}
    assert loaded.format_version == 5 and loaded.epoch == 3 and loaded.seed == 7


def test_saving_writes_the_current_format_and_every_field_round_trips(tmp_path):
    state = PredictorState("regression", "ph", None, {"site": {"gut": 1}}, None, {"s1": 0.25})
    checkpoint = Checkpoint("predictor", {"task": "regression"}, {"w": torch.ones(2)}, epoch=2,
                            best_metric=0.5, best_epoch=1, global_step=8, seed=3,
                            provenance={"data": "abc"}, predictor=state, preempted=True)
    save_checkpoint(tmp_path / "model.pt", checkpoint)
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and raw["categorical_vocab"] == {
        "site": {"gut": 1}} and "predictor" not in raw and "source" not in raw
    loaded = load_checkpoint(tmp_path / "model.pt", "predictor")
    assert torch.equal(loaded.model_state["w"], torch.ones(2))
    assert replace(loaded, model_state={}) == replace(checkpoint, model_state={})
    assert loaded.source == str(tmp_path / "model.pt")


@pytest.mark.parametrize("field, value, message", [
    ("epoch", -1, "checkpoint field 'epoch' must be a whole number >= 0, got '-1'"),
    ("seed", 2**40, "checkpoint field 'seed' must be a whole number in [0, 4294967295]"),
    ("classes", "abc", "checkpoint field 'classes' must be a list of class labels or null"),
    ("selection_reference", {"s": "x"}, "checkpoint field 'selection_reference' must be a "
     "mapping of subject to loss"),
    ("provenance", [1], "checkpoint field 'provenance' must be a mapping or null"),
    ("partial_sums", {"loss": "x"}, "checkpoint field 'partial_sums' must be a mapping of log "
     "name to number"),
])
def test_a_field_that_is_not_what_aam_writes_is_named(tmp_path, field, value, message):
    payload = Checkpoint("predictor", {}, {"w": torch.ones(1)}).to_payload()
    payload[field] = value
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(InputError) as err:
        load_checkpoint(tmp_path / "model.pt", "predictor")
    assert message in str(err.value) and "Use a checkpoint written by aam." in str(err.value)


def _with_setting(tmp_path, dotted: str, value, version: int = FORMAT_VERSION):
    """A predictor checkpoint whose stored config holds ``dotted: value`` (as aam wrote before
    the setting was removed)."""
    from aam.config import FinetuneConfig

    payload = Checkpoint("predictor", to_dict(FinetuneConfig()), {"w": torch.ones(1)}).to_payload()
    payload["format_version"] = version
    *section, key = dotted.split(".")
    (payload["config"][section[0]] if section else payload["config"])[key] = value
    torch.save(payload, tmp_path / "model.pt")
    return tmp_path / "model.pt"


@pytest.mark.parametrize("version", [4, FORMAT_VERSION])
@pytest.mark.parametrize("dotted, value", list(REMOVED.items()))
def test_a_removed_setting_at_the_value_still_built_loads_without_it(tmp_path, dotted, value,
                                                                      version):
    from aam.config import FinetuneConfig, from_dict

    config = load_checkpoint(_with_setting(tmp_path, dotted, value, version), "predictor").config
    assert from_dict(FinetuneConfig, config) == FinetuneConfig()


@pytest.mark.parametrize("dotted, value, shown", [
    ("model.count_features", "clr", "clr"), ("model.count_features", "log1p", "log1p"),
    ("model.count_features", "log1p-cpm", "log1p-cpm"), ("model.asv_norm", False, "false"),
    ("abundance_head", False, "false"), ("abundance_head_init", "zero", "zero"),
    ("abundance_head_features", "mlp", "mlp"),
])
def test_a_removed_variant_fails_with_one_line_naming_the_aam_that_builds_it(tmp_path, dotted,
                                                                             value, shown):
    path = _with_setting(tmp_path, dotted, value)
    with pytest.raises(InputError) as err:
        load_checkpoint(path, "predictor")
    assert str(err.value) == (
        f"{path}: {dotted} {shown} is a model variant this aam no longer builds (removed after "
        f"losing on development data). Retrain with this aam, or read it with {LAST_BUILDER}.")


def test_a_stored_head_width_of_0_loads_as_4_x_the_embedding_dim(tmp_path):
    config = load_checkpoint(_with_setting(tmp_path, "abundance_head_width", 0),
                             "predictor").config
    assert config["abundance_head_width"] == 4 * config["model"]["embedding_dim"]
