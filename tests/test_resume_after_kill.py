"""Resume after ``kill -9``: pretraining and fine-tuning killed after their first checkpoint and
resumed with ``--resume-from`` end with the metrics of an uninterrupted run; a killed Snakemake
run is picked up again with ``--rerun-incomplete``.

Tolerance: the final and best validation losses agree within abs 1e-5 (same seed, CPU,
``num_workers`` 0, two threads); the epochs run and the best epoch agree exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from aam.cli.__main__ import main as aam_main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-5
EPOCHS = 4
TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--num-workers", "0",
        "--seed", "3", "--val-fraction", "0.4", "--epochs", str(EPOCHS)]




def _kill_after_first_checkpoint(argv: list[str], last: Path, timeout: float = 180.0) -> int:
    """Start ``aam`` with ``argv``, SIGKILL it once ``last`` holds epoch >= 1; return that epoch."""
    # One thread, as the in-process runs it is compared with (conftest): with another thread
    # count the sums run in another order and the metrics differ in the fourth digit.
    proc = subprocess.Popen([sys.executable, "-m", "aam.cli", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"{last} never appeared"
            if last.exists():
                epoch = torch.load(last, weights_only=True)["epoch"]
                if epoch >= 1:
                    break
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return epoch


def _final_losses(metrics: dict, stage: str) -> tuple[float, float, int, int]:
    if stage == "pretrain":
        return (metrics["final"]["val_loss"], metrics["best"]["val_loss"], metrics["epochs_run"],
                metrics["best_epoch"])
    return (metrics["history"][-1]["val_loss"], metrics["val_loss"], metrics["epochs_run"],
            metrics["best_epoch"])


@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_killed_run_resumes_to_the_uninterrupted_metrics(stage, tiny_prepared, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    sizes = [*TINY, "--attention-path"] if stage == "train" else TINY  # epochs to kill
    assert aam_main([stage, "--data-dir", str(tiny_prepared), "--output-dir", str(clean),
                     *sizes]) == 0
    argv = [stage, "--data-dir", str(tiny_prepared), "--output-dir", str(killed), *sizes]
    last = killed / "checkpoints" / "last.pt"
    killed_at = _kill_after_first_checkpoint(argv, last)
    assert 1 <= killed_at < EPOCHS and not (killed / "metrics.json").exists()
    assert aam_main([*argv, "--resume-from", str(last)]) == 0
    expected = _final_losses(json.loads((clean / "metrics.json").read_text()), stage)
    resumed = _final_losses(json.loads((killed / "metrics.json").read_text()), stage)
    assert resumed[2:] == expected[2:] == (EPOCHS, expected[3])
    assert resumed[0] == pytest.approx(expected[0], abs=TOLERANCE)
    assert resumed[1] == pytest.approx(expected[1], abs=TOLERANCE)


# A stand-in `aam` for the Snakemake case (simulate, then prepare): `prepare` writes one output,
# then (while SLOW is set) sleeps before the rest, so Snakemake can be killed mid-job.
SLOW_AAM = textwrap.dedent(
    """\
    #!{python}
    import os, sys, time
    from pathlib import Path
    args = sys.argv[2:]
    value = lambda flag: args[args.index(flag) + 1]
    out = Path(value("--output-dir") if "--output-dir" in args else value("--output")).resolve()
    if sys.argv[1] in ("predict", "rf-baseline"):
        out = out.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.biom").write_text("x\\n")
    if sys.argv[1] == "prepare" and os.environ.get("SLOW"):
        Path(os.environ["SLOW"]).write_text("started\\n")
        time.sleep(120)
    for name in ("metadata.tsv", "tree.nwk", "distances.h5", "taxonomy.tsv", "truth.json",
                 "prepare.json"):
        (out / name).write_text("x\\n")
    """
)


def _snakemake(workdir: Path, fake_bin: Path, *args: str, slow: Path | None = None, **kw):
    env = dict(os.environ, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    env.pop("SLOW", None)
    if slow is not None:
        env["SLOW"] = str(slow)
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" /
           "Snakefile"), "-d", str(workdir), "--cores", "1", "results/data/prepare.json", *args]
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


@pytest.mark.slow
def test_killed_snakemake_job_is_marked_incomplete_and_rerun(tmp_path):
    workdir, fake_bin = tmp_path / "wd", tmp_path / "bin"
    shutil.copytree(REPO / "config", workdir / "config")
    fake_bin.mkdir()
    (fake_bin / "aam").write_text(SLOW_AAM.format(python=sys.executable))
    (fake_bin / "aam").chmod(0o755)
    started = tmp_path / "started"
    proc = _snakemake(workdir, fake_bin, slow=started)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job, as a node failure would
    proc.wait(timeout=30)
    assert (workdir / "results" / "data" / "table.biom").exists()
    assert not (workdir / "results" / "data" / "prepare.json").exists()

    unlock = _snakemake(workdir, fake_bin, "--unlock")  # the kill left the lock behind
    assert unlock.wait(timeout=120) == 0
    plain = _snakemake(workdir, fake_bin)
    output = plain.communicate(timeout=120)[0]
    assert plain.returncode != 0
    assert "IncompleteFilesException" in output and "results/data/table.biom" in output, output
    rerun = _snakemake(workdir, fake_bin, "--rerun-incomplete")
    output = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, output
    assert (workdir / "results" / "data" / "prepare.json").read_text() == "x\n"
