"""Preemption through the workflow: a training job stopped by a signal exits 75 with a resumable
checkpoint; `snakemake` run again continues that job (not a restart) and the encoder equals an
uninterrupted run's."""

from __future__ import annotations

import os

import torch

from aam.training.checkpoint import load_checkpoint
from aam.training.preemption import TEST_HOOK
from test_workflow import snakemake

ENCODER = "results/pretrain/fold~0/seed~0/encoder.pt"
CONFIG = ["--configfile", "tests/data/config.yaml", "--cores", "1"]


def test_a_signalled_training_job_is_continued_by_the_next_snakemake(workflow_workdir,
                                                                      tmp_path_factory,
                                                                      monkeypatch):
    clean = tmp_path_factory.mktemp("clean")
    os.system(f"cp -r {workflow_workdir}/config {workflow_workdir}/tests {clean}/")
    assert snakemake(*CONFIG, ENCODER, workdir=clean).returncode == 0
    monkeypatch.setenv(TEST_HOOK, "2")  # SIGTERM after step 2 of 3 in the one epoch
    first = snakemake(*CONFIG, ENCODER, workdir=workflow_workdir)
    assert first.returncode != 0
    log = (workflow_workdir / "logs/pretrain/fold~0/seed~0.log").read_text()
    assert "stopped by SIGTERM in epoch 1 after batch 2" in log
    last = workflow_workdir / "results/pretrain/fold~0/seed~0/checkpoints/last.pt"
    assert load_checkpoint(last).preempted
    monkeypatch.delenv(TEST_HOOK)
    again = snakemake(*CONFIG, ENCODER, workdir=workflow_workdir)
    assert again.returncode == 0, again.stdout
    log = (workflow_workdir / "logs/pretrain/fold~0/seed~0.log").read_text()
    assert "continuing the preempted run" in log and "after batch 2" in log
    a, b = (load_checkpoint(root / ENCODER, "encoder").model_state
            for root in (clean, workflow_workdir))
    assert all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_a_jobs_runtime_becomes_its_stop_time(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "workflow" / "lib"))
    from workflow_args import stop_flag

    assert stop_flag(None) == stop_flag(0) == ""
    assert stop_flag(360) == " --stop-after-minutes 330"  # 30 minutes to write and leave
    assert stop_flag(60) == " --stop-after-minutes 54"
    assert stop_flag(8) == " --stop-after-minutes 3"
