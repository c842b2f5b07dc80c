"""The CUDA paths of training: one GPU with bf16, DDP and FSDP under torchrun (nccl), and
``--parallel dp``. Marked ``gpu``: skipped where no CUDA device is visible. Run on a GPU machine:

    pytest -q -m gpu tests/test_gpu.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aam.cli.train import main as train_main

pytestmark = pytest.mark.gpu

ARGS = ["--embedding-dim", "32", "--attention-heads", "4", "--attention-layers", "1",
        "--epochs", "2", "--val-fraction", "0.25", "--seed", "5", "--batch-size", "8",
        "--token-limit", "32", "--lr", "0.003", "--device", "cuda"]


def _finite_metrics(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["val_loss"]) and metrics["epochs_run"] == 2
    return metrics


def test_one_gpu_bf16_trains_and_resumes(simulated_prepared, tmp_path):
    out = tmp_path / "run"
    argv = ["--data-dir", str(simulated_prepared), "--output-dir", str(out), *ARGS, "--bf16"]
    assert train_main(argv) == 0
    assert _finite_metrics(out)["world_size"] == 1
    resumed = tmp_path / "resumed"
    assert train_main(["--data-dir", str(simulated_prepared), "--output-dir", str(resumed),
                       "--resume-from", str(out / "checkpoints" / "last.pt"), "--epochs", "3",
                       "--device", "cuda"]) == 0
    assert json.loads((resumed / "metrics.json").read_text())["epochs_run"] == 3


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
@pytest.mark.parametrize("command", ["pretrain", "train"])
def test_torchrun_on_cuda_uses_nccl(command, parallel, simulated_prepared, tmp_path):
    n = torch.cuda.device_count()
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n}", "-m", "aam.cli", command, "--data-dir",
           str(simulated_prepared), "--output-dir", str(out), *ARGS, "--parallel", parallel]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=540,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"distributed: {parallel} with {n} processes, backend nccl" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == n
    loss = metrics["val_loss"] if command == "train" else metrics["best"]["val_loss"]
    assert math.isfinite(loss)


def test_parallel_dp_on_cuda(simulated_prepared, tmp_path):
    out = tmp_path / "dp"
    assert train_main(["--data-dir", str(simulated_prepared), "--output-dir", str(out), *ARGS,
                       "--parallel", "dp"]) == 0
    _finite_metrics(out)
