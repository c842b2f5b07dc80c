"""Checkpoints that load but cannot be resumed honestly, and absurd numbers: refused with one
line (exit 2), never trained on silently."""

from __future__ import annotations

import pytest
import torch

from aam.cli.__main__ import main as aam_main

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--val-fraction", "0.4"]


@pytest.fixture(scope="module")
def last(tiny_prepared, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("garbage") / "run"
    assert aam_main(["train", "--data-dir", str(tiny_prepared), "--output-dir", str(out),
                     "--epochs", "1", *TINY]) == 0
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def _damaged(payload: dict, change) -> dict:
    copy = {k: v for k, v in payload.items()}
    copy["config"] = {k: dict(v) if isinstance(v, dict) else v
                      for k, v in payload["config"].items()}
    copy["optimizer_state"] = {"state": dict(payload["optimizer_state"]["state"]),
                               "param_groups": [dict(g) for g in
                                                payload["optimizer_state"]["param_groups"]]}
    change(copy)
    return copy


def _first_state(p):
    return next(iter(p["optimizer_state"]["state"].values()))


CASES = {
    "foreign parameter names": (
        lambda p: p["optimizer_state"]["param_groups"][0].update(params=["not.a.parameter"]),
        "names parameters the model does not have"),
    "state by index": (
        lambda p: p["optimizer_state"].update(state={0: {"exp_avg": torch.zeros(3)}}),
        "state for '0', which the model does not have"),
    "wrong moment shape": (
        lambda p: _first_state(p).update(exp_avg=torch.zeros(2, 2)),
        "exp_avg of"),
    "NaN moments": (
        lambda p: _first_state(p).update(exp_avg_sq=_first_state(p)["exp_avg_sq"] * float("nan")),
        "non-finite or negative"),
    "text learning rate in a group": (
        lambda p: p["optimizer_state"]["param_groups"][0].update(lr="fast"),
        "lr 'fast' is not a number"),
    "empty train section": (lambda p: p["config"].update(train={}),
                            "its 'train' section is missing or empty"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_resume_checkpoint_is_refused(case, last, tiny_prepared, tmp_path, capsys):
    change, message = CASES[case]
    bad = tmp_path / "bad.pt"
    torch.save(_damaged(last, change), bad)
    capsys.readouterr()
    code = aam_main(["train", "--data-dir", str(tiny_prepared), "--output-dir",
                     str(tmp_path / "out"), "--epochs", "2", *TINY, "--resume-from", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert message in err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag,value,message", [
    ("--lr", "1e308", "lr must be at most 1, got 1e+308"),
    ("--lr", "5", "lr must be at most 1, got 5"),
    ("--weight-decay", "40", "weight_decay must be at most 1"),
    ("--categorical-lr", "3", "categorical_lr must be at most 1"),
    ("--token-limit", "10000000", "token_limit must be at most 100000"),
    ("--epochs", "1000000000", "epochs must be at most 100000"),
])
def test_absurd_numbers_are_refused_with_the_range(flag, value, message, tiny_prepared, tmp_path,
                                                   capsys):
    capsys.readouterr()
    code = aam_main(["train", "--data-dir", str(tiny_prepared), "--output-dir",
                     str(tmp_path / "out"), *TINY, flag, value])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and message in last and not (tmp_path / "out").exists()
