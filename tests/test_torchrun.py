"""`aam pretrain` and `aam train` under torchrun (2 CPU processes, gloo) and the strategy errors.

The multi-process runs are compared with one process on the same global batch: 2 ranks x
batch 4 see exactly the batches 1 process x batch 8 sees (``RankSampler`` deals positions
r, r + 2, ... of one seeded permutation), and DDP averages the ranks' gradients, which equals
the global-batch gradient when the loss is a per-sample mean over equal rank batches. The
fine-tuning target loss (MSE) is such a mean, so fine-tuning matches to float rounding
(relative 1e-3). The distance loss is a mean over the pairs *within* each rank's batch (6 pairs
per rank instead of 28 per global batch), so pretraining follows a different gradient and is
only compared loosely (relative 0.25; measured 0.162 vs 0.161 after 2 epochs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from aam.cli.pretrain import main as pretrain_main
from aam.cli.train import main as train_main

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--dropout", "0", "--device", "cpu", "--epochs", "2", "--val-fraction", "0.25",
        "--seed", "5"]
# no sample has more than 40 ASVs: random sampling then keeps every ASV (in a random order,
# which the model is invariant to), so ranks and one process see the same inputs
# Fine-tuning keeps the ASV batch norm's statistics fixed, and a new encoder's come from all
# ranks' ASVs (calibrate_asv_norm), so every process standardises ASVs alike.
# --lr 1e-4: fine-tuning after the head's fit is far from smooth at larger steps (validation
# loss x7 in the first epoch at 3e-3 on this tiny run), which turns the float differences of
# averaged gradients into different models; the fit itself is compared by its own test below.
TRAIN = [*TINY, "--token-limit", "64", "--asv-sampling", "random", "--val-prediction-passes",
         "3", "--no-count-prediction", "--lr", "1e-4"]
PRETRAIN = [*TINY, "--token-limit", "16", "--lr", "0.003"]


@pytest.fixture
def prepared(simulated_prepared) -> Path:
    return simulated_prepared


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "aam.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # torchrun then stops its workers (SIGKILL would not)
            try:
                err = proc.communicate(timeout=60)[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                err = ""
            pytest.fail(f"torchrun {args[0]} hung for 180 s: {err[-2000:]}")
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _listing(out: Path) -> list[str]:
    """Every file once, with TensorBoard's host/pid/time names folded to one token."""
    names = []
    for path in sorted(out.rglob("*")):
        if path.is_file():
            rel = path.relative_to(out).as_posix()
            names.append(rel.split(".out.tfevents.")[0] if ".tfevents." in rel else rel)
    return sorted(names)


def _assert_written_once(ddp: Path, single: Path) -> None:
    assert _listing(ddp) == _listing(single)
    assert not [n for n in _listing(ddp) if "rank" in n or n.endswith(".tmp")]
    for name in ("train_samples.txt", "val_samples.txt"):
        ids = (ddp / name).read_text().split()
        assert len(ids) == len(set(ids)) and ids == (single / name).read_text().split()


def test_train_under_torchrun_matches_one_process_on_the_global_batch(prepared, tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    done = _torchrun("train", "--data-dir", str(prepared), "--output-dir", str(ddp),
                     "--batch-size", "4", *TRAIN)
    assert done.stderr.count("distributed: ddp with 2 processes, backend gloo") == 1
    assert train_main(["--data-dir", str(prepared), "--output-dir", str(single),
                       "--batch-size", "8", *TRAIN]) == 0
    _assert_written_once(ddp, single)
    preds = pd.read_csv(ddp / "val_predictions.tsv", sep="\t", dtype={"sample_id": str})
    val = (ddp / "val_samples.txt").read_text().split()
    assert sorted(preds["sample_id"]) == sorted(val) and (preds["n_passes"] == 3).all()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ddp, single))
    assert a["n"] == b["n"] == len(val)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)
    for x, y in zip(a["history"], b["history"]):
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-3)
    single_preds = pd.read_csv(single / "val_predictions.tsv", sep="\t", dtype={"sample_id": str})
    assert preds["prediction"].to_numpy() == pytest.approx(
        single_preds["prediction"].to_numpy(), rel=1e-3, abs=1e-4)


def test_the_head_fit_under_torchrun_is_the_one_process_fit(prepared, tmp_path):
    """Every rank fits the abundance head on the gathered samples: the same fit and the same
    fitted start (epoch 0) as one process."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    fit = [*TRAIN, "--epochs", "1"]
    _torchrun("train", "--data-dir", str(prepared), "--output-dir", str(ddp), "--batch-size",
              "4", *fit)
    assert train_main(["--data-dir", str(prepared), "--output-dir", str(single),
                       "--batch-size", "8", *fit]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ddp, single))
    assert a["abundance_head_fit"]["penalty"] == b["abundance_head_fit"]["penalty"]
    assert a["abundance_head_fit"]["val_loss"] == pytest.approx(
        b["abundance_head_fit"]["val_loss"], rel=1e-6)
    assert a["history"][0]["epoch"] == 0
    assert a["history"][0]["val_loss"] == pytest.approx(b["history"][0]["val_loss"], rel=1e-5)


def test_fsdp_train_resumed_under_torchrun_matches_one_process(prepared, tmp_path):
    """FSDP shards parameters, gradients and optimizer state; its gradient is DDP's, so the
    same tolerance holds. Both runs stop after epoch 1 and resume from their last.pt (FSDP's
    holds the gathered full state) for epoch 2."""
    fsdp, single = tmp_path / "fsdp", tmp_path / "single"

    def argv(out: Path, batch: str) -> list[str]:
        return ["--data-dir", str(prepared), "--output-dir", str(out), "--batch-size", batch,
                "--attention-path", *TRAIN]

    done = _torchrun("train", *argv(fsdp, "4"), "--parallel", "fsdp", "--epochs", "1")
    assert done.stderr.count("distributed: fsdp with 2 processes, backend gloo") == 1
    after_one = tmp_path / "fsdp-epoch1.pt"
    shutil.copy(fsdp / "checkpoints" / "last.pt", after_one)
    _torchrun("train", *argv(fsdp, "4"), "--parallel", "fsdp", "--resume-from",
              str(fsdp / "checkpoints" / "last.pt"))
    assert train_main([*argv(single, "8"), "--epochs", "1"]) == 0
    assert train_main([*argv(single, "8"), "--resume-from",
                       str(single / "checkpoints" / "last.pt")]) == 0
    _assert_written_once(fsdp, single)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (fsdp, single))
    assert a["epochs_run"] == b["epochs_run"] == 2
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)
    model = torch.load(fsdp / "model.pt", weights_only=True)
    reference = torch.load(single / "model.pt", weights_only=True)
    assert model["model_state"].keys() == reference["model_state"].keys()
    for name, weight in model["model_state"].items():  # full, unsharded tensors
        assert weight.shape == reference["model_state"][name].shape, name
    last = torch.load(fsdp / "checkpoints" / "last.pt", weights_only=True)
    assert set(last["optimizer_state"]["state"]) <= set(model["model_state"])  # keyed by name
    # FSDP's checkpoint resumes in one process too (full state, optimizer keyed by name)
    crossed = tmp_path / "crossed"
    assert train_main([*argv(crossed, "8"), "--resume-from", str(after_one)]) == 0
    c = json.loads((crossed / "metrics.json").read_text())
    assert c["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)


def test_fsdp_with_a_frozen_pretrained_base_matches_one_process(prepared, tmp_path):
    """A frozen base stays in FSDP's root unit (its cached outputs differ between ranks)."""
    encoder = tmp_path / "pre"
    assert pretrain_main(["--data-dir", str(prepared), "--output-dir", str(encoder),
                          "--batch-size", "8", *PRETRAIN]) == 0
    frozen = [*TRAIN, "--freeze-base", "--pretrained-encoder", str(encoder / "encoder.pt")]
    fsdp, single = tmp_path / "fsdp", tmp_path / "single"
    _torchrun("train", "--data-dir", str(prepared), "--output-dir", str(fsdp), "--batch-size",
              "4", *frozen, "--parallel", "fsdp")
    assert train_main(["--data-dir", str(prepared), "--output-dir", str(single),
                       "--batch-size", "8", *frozen]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (fsdp, single))
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)


@pytest.mark.parametrize("strategy", [[], ["--parallel", "fsdp"]], ids=["ddp", "fsdp"])
def test_pretrain_under_torchrun_writes_each_output_once(prepared, tmp_path, strategy):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    _torchrun("pretrain", "--data-dir", str(prepared), "--output-dir", str(ddp),
              "--batch-size", "4", *PRETRAIN, *strategy)
    assert pretrain_main(["--data-dir", str(prepared), "--output-dir", str(single),
                          "--batch-size", "8", *PRETRAIN]) == 0
    _assert_written_once(ddp, single)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ddp, single))
    assert (a["world_size"], b["world_size"]) == (2, 1)
    assert a["n_val"] == b["n_val"] == 8
    # distance pairs within each rank's batch: a different gradient, so a loose tolerance
    assert a["best"]["val_loss"] == pytest.approx(b["best"]["val_loss"], rel=0.25)
    encoder = torch.load(ddp / "encoder.pt", weights_only=True)
    assert encoder["epoch"] == a["best_epoch"] and encoder["kind"] == "encoder"


@pytest.mark.parametrize("main", [pretrain_main, train_main], ids=["pretrain", "train"])
def test_data_parallel_without_cuda_says_so(main, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    code = main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                 "--parallel", "dp"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--parallel dp needs CUDA GPUs" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("main", [pretrain_main, train_main], ids=["pretrain", "train"])
def test_more_ranks_than_gpus_fails_before_anything_starts(main, tmp_path, capsys, monkeypatch):
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code = main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "torchrun started 2 processes but only 1 GPU(s) are visible" in err[0]
    assert not (tmp_path / "o").exists()


def test_diverging_pretrain_exits_2_with_one_line_and_no_encoder(prepared, tmp_path, capsys,
                                                                monkeypatch):
    from aam.training.pretrain_objective import PretrainObjective

    real = PretrainObjective.loss

    def nan_loss(self, model, batch):  # a loss that blows up (lr is range-checked now)
        loss, logs = real(self, model, batch)
        return loss * float("nan"), logs

    monkeypatch.setattr(PretrainObjective, "loss", nan_loss)
    out = tmp_path / "o"
    code = pretrain_main(["--data-dir", str(prepared), "--output-dir", str(out), "--batch-size",
                          "4", *PRETRAIN, "--grad-clip", "0", "--warmup-fraction", "0"])
    err = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]
    assert code == 2 and len(err) == 1
    assert err[0].startswith("aam pretrain: error: training diverged: non-finite loss at epoch 1")
    assert not (out / "encoder.pt").exists() and not (out / "metrics.json").exists()
