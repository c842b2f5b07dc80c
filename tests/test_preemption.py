"""Preemption-safe training: a stop signal mid-epoch writes a resumable checkpoint and exits 75;
the same command run again continues from it and ends with exactly the uninterrupted model."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from aam.cli.__main__ import main as aam_main
from aam.training.checkpoint import load_checkpoint
from aam.training.preemption import EXIT_PREEMPTED, TEST_HOOK

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "16", "--device", "cpu", "--epochs", "3",
        "--val-fraction", "0.25"]


def _argv(stage: str, data: Path, out: Path) -> list[str]:
    extra = ["--group-by", "subject", "--attention-path"] if stage == "train" else []
    return [stage, "--data-dir", str(data), "--output-dir", str(out), *TINY, *extra]


def _same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_a_signal_mid_epoch_then_the_same_command_gives_the_uninterrupted_model(
        stage, simulated_prepared, tmp_path, monkeypatch, capsys):
    clean, stopped = tmp_path / "clean", tmp_path / "stopped"
    assert aam_main(_argv(stage, simulated_prepared, clean)) == 0
    monkeypatch.setenv(TEST_HOOK, "8")  # SIGTERM after optimiser step 8: inside epoch 2
    capsys.readouterr()
    assert aam_main(_argv(stage, simulated_prepared, stopped)) == EXIT_PREEMPTED
    err = capsys.readouterr().err
    assert "stopped by SIGTERM in epoch 2 after batch" in err and "Traceback" not in err
    last = load_checkpoint(stopped / "checkpoints" / "last.pt")
    assert last.preempted and last.global_step == 8 and last.resume_batch > 0
    assert not (stopped / "metrics.json").exists()
    monkeypatch.delenv(TEST_HOOK)
    assert aam_main(_argv(stage, simulated_prepared, stopped)) == 0  # the same command
    assert "continuing the preempted run" in capsys.readouterr().err
    name = "encoder.pt" if stage == "pretrain" else "model.pt"
    kind = "encoder" if stage == "pretrain" else "predictor"
    _same_tensors(load_checkpoint(clean / name, kind).model_state,
                  load_checkpoint(stopped / name, kind).model_state)
    if stage == "train":
        a, b = (pd.read_csv(p / "val_predictions.tsv", sep="\t") for p in (clean, stopped))
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_a_finished_run_is_not_continued_but_retrained(simulated_prepared, tmp_path, capsys):
    out = tmp_path / "run"
    assert aam_main(_argv("pretrain", simulated_prepared, out)) == 0
    assert not load_checkpoint(out / "checkpoints" / "last.pt").preempted
    capsys.readouterr()
    assert aam_main(_argv("pretrain", simulated_prepared, out)) == 0
    assert "continuing the preempted run" not in capsys.readouterr().err


def test_sigusr1_is_a_stop_request_too(monkeypatch):
    from aam.training import preemption

    with preemption.watch():
        signal.raise_signal(signal.SIGUSR1)
        assert preemption.requested() == "SIGUSR1"
    assert preemption.requested() is None
    assert signal.getsignal(signal.SIGUSR1) is not preemption._handler


def test_the_time_limit_stops_like_a_signal(simulated_prepared, tmp_path, monkeypatch, capsys):
    from aam.training import preemption

    out = tmp_path / "run"
    argv = _argv("train", simulated_prepared, out)
    monkeypatch.setattr(preemption, "_STARTED", preemption.time.monotonic() - 120)
    capsys.readouterr()
    assert aam_main([*argv, "--stop-after-minutes", "1"]) == EXIT_PREEMPTED
    assert "stopped by the time limit (--stop-after-minutes 1) in epoch 1 after batch 1" in \
        capsys.readouterr().err
    assert aam_main(argv) == 0 and (out / "model.pt").is_file()
