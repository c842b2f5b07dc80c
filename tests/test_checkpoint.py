"""Checkpoints: safe loading (weights_only), kind/format checks, corrupt and malicious files."""

from __future__ import annotations

import os

import pytest
import torch

from aam.config import DataConfig, PretrainConfig, to_dict
from aam.errors import InputError
from aam.models.pretrain import PretrainModel
from aam.training.checkpoint import load_checkpoint, make_payload, save_checkpoint
from aam.training.seeding import get_rng_state, set_rng_state
from test_encoder import TINY, make_batch

CFG = PretrainConfig(data=DataConfig(batch_size=4), model=TINY)


def _payload(model, **kw):
    return make_payload("encoder", to_dict(CFG), model.state_dict(), epoch=3, best_metric=0.5,
                        seed=7, rng_state=get_rng_state(), **kw)


def test_round_trip_gives_identical_outputs(tmp_path):
    model = PretrainModel(CFG).eval()
    save_checkpoint(tmp_path / "encoder.pt", _payload(model))
    raw = torch.load(tmp_path / "encoder.pt", weights_only=True)  # plain data only
    assert raw["kind"] == "encoder" and raw["epoch"] == 3 and raw["config"]["model"]["max_bp"] == 12
    loaded = PretrainModel(CFG).eval()
    loaded.load_state_dict(load_checkpoint(tmp_path / "encoder.pt", "encoder")["model_state"])
    batch = make_batch()
    torch.testing.assert_close(loaded(batch).distances, model(batch).distances)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary


def test_rng_state_round_trip_restores_draws(tmp_path):
    model = PretrainModel(CFG)
    save_checkpoint(tmp_path / "c.pt", _payload(model))
    expected = torch.rand(3)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng_state"])
    torch.testing.assert_close(torch.rand(3), expected)


def test_wrong_kind_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _payload(PretrainModel(CFG)))
    with pytest.raises(InputError, match="is a 'encoder' checkpoint but a 'predictor'"):
        load_checkpoint(tmp_path / "c.pt", "predictor")


def test_newer_format_is_refused(tmp_path):
    payload = _payload(PretrainModel(CFG))
    payload["format_version"] = 99
    save_checkpoint(tmp_path / "c.pt", payload)
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


def test_format_2_predictor_loads_without_the_abundance_head(tmp_path):
    """Format-2 predictors were trained without the abundance head; their config does not name
    it, so loading must say it is off rather than build a head the weights do not have."""
    from aam.config import FinetuneConfig, from_dict

    payload = make_payload("predictor", to_dict(FinetuneConfig(model=TINY)), {}, epoch=1,
                           best_metric=0.0, seed=0)
    payload["format_version"] = 2
    del payload["config"]["abundance_head"]
    save_checkpoint(tmp_path / "model.pt", payload)
    loaded = load_checkpoint(tmp_path / "model.pt", "predictor")
    assert from_dict(FinetuneConfig, loaded["config"]).abundance_head is False


def test_format_3_predictor_loads_with_the_narrow_unfitted_head(tmp_path):
    """Format-3 heads had 4 x embedding-dim hidden units and were not fitted."""
    from aam.config import FinetuneConfig, from_dict

    payload = make_payload("predictor", to_dict(FinetuneConfig(model=TINY)), {}, epoch=1,
                           best_metric=0.0, seed=0)
    payload["format_version"] = 3
    for key in ("abundance_head_width", "abundance_head_init", "abundance_head_features"):
        del payload["config"][key]
    save_checkpoint(tmp_path / "model.pt", payload)
    cfg = from_dict(FinetuneConfig, load_checkpoint(tmp_path / "model.pt", "predictor")["config"])
    assert (cfg.abundance_head_width, cfg.abundance_head_init,
            cfg.abundance_head_features) == (0, "zero", "mlp")
