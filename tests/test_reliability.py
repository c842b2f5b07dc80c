"""Faults around the outputs (issue 15): a full disk during prepare, train and predict, a
read-only output, kill -9 in the middle of prepare's write phase followed by a clean rerun, two
concurrent runs into one folder, a stale lock, Ctrl-C and divergence. Every failure is one line,
exit 2 (130 for Ctrl-C), no traceback, and leaves the output folder as it was before."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from aam.cli.__main__ import main as aam_main
from aam.lock import folder_lock, lock_path
from aam.transaction import MANIFEST_NAME, STAGING_NAME

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--val-fraction", "0.4",
        "--attention-path"]
ORIGINAL_TORCH_SAVE = torch.save


def _prepare_argv(out) -> list[str]:
    return ["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
            str(DATA / "tiny-metadata.tsv"), "--tree", str(DATA / "tiny-tree.nwk"),
            "--min-depth", "10", "--metadata-column", "ph", "--output-dir", str(out)]


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    prep, run = root / "prep", root / "run"
    assert aam_main(_prepare_argv(prep)) == 0
    assert aam_main(["train", "--data-dir", str(prep), "--output-dir", str(run), "--epochs",
                     "1", *TINY]) == 0
    return prep, run


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def _earlier_run(folder: Path) -> dict:
    """An output folder holding a file of an earlier run; returns its snapshot."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "earlier.txt").write_text("kept\n")
    return _snapshot(folder)


def _one_line_failure(argv, capsys, code=2) -> str:
    capsys.readouterr()
    assert aam_main(argv) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and len(last) < 300
    assert last.startswith(f"aam {argv[0]}: error: ")
    return last


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# --- disk full ----------------------------------------------------------------------------


def test_disk_full_during_prepare_leaves_the_folder_as_it_was(tmp_path, monkeypatch, capsys):
    out = tmp_path / "prep"
    before = _earlier_run(out)

    def half_then_full(path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF half a table")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("aam.data.prepare.write_table", half_then_full)
    last = _one_line_failure(_prepare_argv(out), capsys)
    assert "no space left on the device while writing" in last
    assert STAGING_NAME not in last  # the real folder is named, not the removed staging one
    assert _snapshot(out) == before


def test_disk_full_during_train_keeps_the_checkpoints_and_says_where(w, tmp_path, monkeypatch,
                                                                     capsys):
    prep, _ = w
    out = tmp_path / "run"
    before = _earlier_run(out)

    def model_pt_fails(obj, f, *args, **kwargs):
        if ".model.pt." in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return ORIGINAL_TORCH_SAVE(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", model_pt_fails)
    last = _one_line_failure(["train", "--data-dir", str(prep), "--output-dir", str(out),
                              "--epochs", "1", *TINY], capsys)
    assert "no space left on the device while writing" in last
    assert f"Checkpoints kept: --resume-from {out / 'checkpoints' / 'last.pt'}" in last
    assert f"while writing {out / 'model.pt'}." in last
    after = _snapshot(out)
    ours = ("checkpoints", MANIFEST_NAME)  # kept for the resume, and the record of them
    assert {k: v for k, v in after.items() if not k.startswith(ours)} == before
    monkeypatch.setattr(torch, "save", ORIGINAL_TORCH_SAVE)
    assert aam_main(["train", "--data-dir", str(prep), "--output-dir", str(out), "--epochs", "2",
                     *TINY, "--resume-from", str(out / "checkpoints" / "last.pt")]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


def test_disk_full_during_predict_into_the_run_folder_leaves_it_as_it_was(w, tmp_path,
                                                                          monkeypatch, capsys):
    prep, run = w
    before = _snapshot(run)
    monkeypatch.setattr("aam.inference.write_metrics", _no_space)
    last = _one_line_failure(["predict", "--model", str(run / "model.pt"), "--data-dir",
                              str(prep), "--output", str(run / "predictions.tsv"), "--device",
                              "cpu"], capsys)
    assert f"no space left on the device while writing into {run}" in last
    assert _snapshot(run) == before  # predictions.tsv was staged, never moved in


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    if not _mount_tmpfs(path, options):
        pytest.skip("mounting a tmpfs needs root and mount permission; the injected ENOSPC and "
                    "EROFS tests cover this without one")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_prepare_on_a_real_full_tmpfs_is_one_line(tmp_path, capsys):
    with _tmpfs(tmp_path / "small", "size=64k") as disk:
        (disk / "filler").write_bytes(b"\0" * (40 * 1024))
        before = _snapshot(disk)
        last = _one_line_failure(_prepare_argv(disk / "prep"), capsys)
        assert "no space left on the device" in last
        assert _snapshot(disk) == before


# --- read-only output ---------------------------------------------------------------------


def test_read_only_output_is_one_line(tmp_path, monkeypatch, capsys):
    """EROFS injected where the command creates its folders (root ignores chmod)."""
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    last = _one_line_failure(_prepare_argv(tmp_path / "ro" / "prep"), capsys)
    assert f"cannot write {tmp_path / 'ro'}: read-only file system" in last
    assert not (tmp_path / "ro").exists()


def test_read_only_tmpfs_is_one_line(tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as disk:
        last = _one_line_failure(_prepare_argv(disk / "prep"), capsys)
        assert "read-only file system. Choose a writable output folder" in last
        assert not (disk / "prep").exists()


# --- kill -9 during prepare's write phase, then a clean rerun ------------------------------


def _python(code: str, **env) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_in_prepare_write_phase_then_a_clean_rerun(tmp_path, capsys):
    out = tmp_path / "prep"
    proc = _python(f"""
        import os, signal
        import aam.data.prepare as prepare
        real = prepare.write_table
        def write_then_die(path, *args, **kwargs):
            real(path, *args, **kwargs)
            with open(path, "r+b") as fh:
                fh.truncate(os.path.getsize(path) // 2)  # a half-written table
            os.kill(os.getpid(), signal.SIGKILL)
        prepare.write_table = write_then_die
        from aam.cli.__main__ import main
        main({_prepare_argv(out)!r})
    """)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.rglob("*"))
    assert "table.biom" not in left and "prepare.json" not in left  # nothing looks finished
    assert any(name.endswith(".tmp") for name in left)  # the half table, in the staging folder
    capsys.readouterr()
    assert aam_main(_prepare_argv(out)) == 0
    err = capsys.readouterr().err
    assert "left by an interrupted run" in err and "taking over the lock" in err
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "distances.h5",
                                                     "metadata.tsv", "prepare.json", "table.biom"]


# --- one writer per folder ----------------------------------------------------------------


def test_two_concurrent_runs_into_one_folder(tmp_path, capsys):
    """A slow prepare holds the folder; a second one stops at once naming it; the first ends
    with its own complete output."""
    out = tmp_path / "prep"
    first = _python(f"""
        import time
        import aam.data.prepare as prepare
        real = prepare.write_table
        def slow(*args, **kwargs):
            print("writing", flush=True)
            time.sleep(3)
            return real(*args, **kwargs)
        prepare.write_table = slow
        from aam.cli.__main__ import main
        raise SystemExit(main({_prepare_argv(out)!r}))
    """)
    try:
        assert first.stdout.readline().strip() == "writing"
        last = _one_line_failure(_prepare_argv(out), capsys)
        assert f"{out} is being written by another aam run (host " in last
        assert f"PID {first.pid}" in last
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert json.loads((out / "prepare.json").read_text())["n_samples"] > 0
    assert not lock_path(out).exists() and not (out / STAGING_NAME).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
    out = tmp_path / "prep"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(out).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid,
                                          "since": time.time()}))
    capsys.readouterr()
    assert aam_main(_prepare_argv(out)) == 0
    assert f"taking over the lock of {out} left by PID {dead.pid}" in capsys.readouterr().err


def test_lock_held_in_this_process_refuses_a_second_writer(tmp_path, capsys):
    out = tmp_path / "split"
    out.mkdir()
    with folder_lock(out):
        last = _one_line_failure(["split", "--metadata", str(DATA / "tiny-metadata.tsv"),
                                  "--output-dir", str(out)], capsys)
    assert f"PID {os.getpid()}" in last
    assert aam_main(["split", "--metadata", str(DATA / "tiny-metadata.tsv"), "--output-dir",
                     str(out)]) == 0


# --- Ctrl-C and divergence ------------------------------------------------------------------


def test_ctrl_c_during_training_leaves_the_folder_as_it_was(w, tmp_path, monkeypatch, capsys):
    prep, _ = w
    out = tmp_path / "run"
    before = _earlier_run(out)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("aam.training.finetune.fit", interrupt)
    last = _one_line_failure(["train", "--data-dir", str(prep), "--output-dir", str(out),
                              "--epochs", "1", *TINY], capsys, code=130)
    assert "interrupted; no output was written" in last
    assert _snapshot(out) == before


def test_divergence_leaves_no_outputs_but_the_resumable_checkpoints(w, tmp_path, monkeypatch,
                                                                    capsys):
    """Before issue 15 a diverged run left config.resolved.yaml, sample lists and TensorBoard
    files; now only checkpoints/ (resumable, named in the error) remains."""
    from aam.training import finetune_objective

    prep, _ = w
    out = tmp_path / "run"
    before = _earlier_run(out)
    real_loss = finetune_objective.FinetuneObjective.loss
    calls = []

    def nan_in_epoch_2(self, model, batch):
        calls.append(1)
        loss, logs = real_loss(self, model, batch)
        return (loss * float("nan") if len(calls) > 2 else loss), logs

    monkeypatch.setattr(finetune_objective.FinetuneObjective, "loss", nan_in_epoch_2)
    last = _one_line_failure(["train", "--data-dir", str(prep), "--output-dir", str(out),
                              "--epochs", "3", *TINY], capsys)
    assert "training diverged" in last and STAGING_NAME not in last
    assert str(out / "checkpoints" / "last.pt") in last
    after = _snapshot(out)
    ours = ("checkpoints", MANIFEST_NAME)  # kept for the resume, and the record of them
    assert {k: v for k, v in after.items() if not k.startswith(ours)} == before
    assert "checkpoints/last.pt" in after


def test_leftovers_of_an_older_killed_run_are_removed_and_reported(tmp_path, caplog):
    from aam.transaction import output_transaction

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / MANIFEST_NAME).write_text('{"written": ["checkpoints", "table.biom"]}')
    (out / "checkpoints" / ".last.pt.k3x9q2z1.tmp").write_bytes(b"half")
    (out / ".table.biom.ab12cd34.tmp").write_bytes(b"half")
    (out / "notes.tmp").write_text("not ours: kept\n")
    (out / ".notes.txt.ab12cd34.tmp").write_text("a user's, named like ours: kept\n")
    with output_transaction(out) as tx:
        (tx.staging / "new.txt").write_text("new\n")
    assert sorted(p.name for p in out.rglob("*")) == [
        MANIFEST_NAME, ".notes.txt.ab12cd34.tmp", "checkpoints", "new.txt", "notes.tmp"]
    assert caplog.text.count("left by an interrupted run") == 2
