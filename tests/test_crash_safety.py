"""Crash safety: a write that dies half-way leaves no file at the final path (every writer goes
through a temporary name + rename), and ``kill -9`` of a running ``aam pretrain`` never leaves a
checkpoint or metrics.json that fails to load."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from aam.cli.__main__ import main as aam_main
from aam.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

DATA = Path(__file__).parent / "data"
TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu"]
ORIGINAL_TO_CSV = pd.DataFrame.to_csv
ORIGINAL_TORCH_SAVE = torch.save
ORIGINAL_WRITE_TEXT = Path.write_text


def _disk_full():
    return OSError(28, "No space left on device (simulated)")


def _half_to_csv(self, path_or_buf=None, *args, **kwargs):
    """DataFrame.to_csv that writes the first half of the text to a path, then fails."""
    text = ORIGINAL_TO_CSV(self, None, *args, **kwargs)
    if path_or_buf is None or not isinstance(path_or_buf, (str, os.PathLike)):
        return ORIGINAL_TO_CSV(self, path_or_buf, *args, **kwargs)
    Path(path_or_buf).write_bytes(text.encode()[: len(text) // 2])
    raise _disk_full()


def _half_torch_save(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    ORIGINAL_TORCH_SAVE(obj, buffer, *args, **kwargs)
    Path(f).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    raise _disk_full()


def _leftover_temps(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Prepared tiny fixture, a split, a 1-epoch model and its predictions (the inputs of the
    writers under test)."""
    root = tmp_path_factory.mktemp("crash")
    prep, run = root / "prep", root / "run"
    assert aam_main(["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
                     str(DATA / "tiny-metadata.tsv"), "--tree", str(DATA / "tiny-tree.nwk"),
                     "--min-depth", "10", "--metadata-column", "ph",
                     "--output-dir", str(prep)]) == 0
    assert aam_main(["train", "--data-dir", str(prep), "--output-dir", str(run), "--epochs",
                     "1", "--val-fraction", "0.4", *TINY]) == 0
    return root, prep, run


def _prepare_argv(root, out):
    return ["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
            str(DATA / "tiny-metadata.tsv"), "--tree", str(DATA / "tiny-tree.nwk"),
            "--min-depth", "10", "--metadata-column", "ph", "--output-dir", str(out)]


# writer -> (argv builder (prep, run, out) -> argv, files that must not exist after the crash)
CSV_WRITERS = {
    "prepare": (lambda prep, run, out: _prepare_argv(None, out),
                ["metadata.tsv", "distances.h5", "prepare.json"]),
    "rf-baseline": (lambda prep, run, out: [
        "rf-baseline", "--data-dir", str(prep), "--metadata-column", "ph", "--train-samples",
        str(run / "train_samples.txt"), "--val-samples", str(run / "val_samples.txt"),
        "--output", str(out / "predictions.tsv")], ["predictions.tsv", "metrics.json"]),
    "predict": (lambda prep, run, out: [
        "predict", "--model", str(run / "model.pt"), "--data-dir", str(prep), "--output",
        str(out / "predictions.tsv"), "--device", "cpu"], ["predictions.tsv", "metrics.json"]),
}


@pytest.mark.parametrize("writer", sorted(CSV_WRITERS))
def test_table_write_dying_half_way_leaves_no_output(writer, w, tmp_path, monkeypatch, capsys):
    _, prep, run = w
    build, never = CSV_WRITERS[writer]
    out = tmp_path / "out"
    monkeypatch.setattr(pd.DataFrame, "to_csv", _half_to_csv)
    _fails_with_disk_full(build(prep, run, out), capsys)
    assert [name for name in never if (out / name).exists()] == []
    assert not out.exists()  # the transaction leaves the output folder as it was (absent)
    assert _leftover_temps(tmp_path) == []


def _fails_with_disk_full(argv, capsys):
    """The command ends with exit 2 and one 'no space left' line naming what it was writing."""
    capsys.readouterr()
    assert aam_main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no space left on the device while writing" in last and "Traceback" not in last


def test_compare_dying_half_way_leaves_no_table(w, tmp_path, monkeypatch, capsys):
    _, prep, run = w
    results = tmp_path / "results"
    fold = results / "rf" / "fold~0" / "seed~0"
    assert aam_main(CSV_WRITERS["rf-baseline"][0](prep, run, fold)) == 0
    fine = results / "finetune" / "categorical-fusion~concat" / "fold~0" / "seed~0"
    assert aam_main(CSV_WRITERS["predict"][0](prep, run, fine)) == 0
    monkeypatch.setattr(pd.DataFrame, "to_csv", _half_to_csv)
    _fails_with_disk_full(["compare", "--results-dir", str(results), "--output-dir",
                           str(tmp_path / "r")], capsys)
    assert not (tmp_path / "r").exists()
    assert _leftover_temps(tmp_path) == []


def test_split_dying_on_a_later_file_leaves_no_file_at_all(w, tmp_path, monkeypatch, capsys):
    calls = []

    def third_write_fails(self, data, *args, **kwargs):
        calls.append(self)
        if len(calls) == 3:
            ORIGINAL_WRITE_TEXT(self, data[: len(data) // 2], *args, **kwargs)
            raise _disk_full()
        return ORIGINAL_WRITE_TEXT(self, data, *args, **kwargs)

    out = tmp_path / "splits"
    monkeypatch.setattr(Path, "write_text", third_write_fails)
    _fails_with_disk_full(["split", "--metadata", str(DATA / "tiny-metadata.tsv"),
                           "--output-dir", str(out)], capsys)
    assert len(calls) == 3  # two lists were written (to the staging folder) before the failure
    assert not out.exists()
    assert _leftover_temps(tmp_path) == []


def test_checkpoint_save_dying_half_way_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, Checkpoint("encoder", {}, {"w": torch.ones(3)}, epoch=1))
    monkeypatch.setattr(torch, "save", _half_torch_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, Checkpoint("encoder", {}, {"w": torch.zeros(3)}, epoch=2))
    assert load_checkpoint(path, "encoder").epoch == 1
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "fresh.pt", Checkpoint("encoder", {}, {}, epoch=1))
    assert not (tmp_path / "fresh.pt").exists()
    assert _leftover_temps(tmp_path) == []


def _all_outputs_load(out: Path) -> int:
    """Load every .pt (weights_only) and parse every .json under ``out``; return the count."""
    checked = 0
    for path in out.rglob("*.pt"):
        payload = torch.load(path, weights_only=True)
        assert payload["kind"] == "encoder" and payload["model_state"]
        checked += 1
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
        checked += 1
    return checked


def _start_pretrain(prep: Path, out: Path, epochs: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "aam.cli", "pretrain", "--data-dir", str(prep),
            "--output-dir", str(out), "--epochs", str(epochs), "--val-fraction", "0.4", *TINY]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "pretrain ended before writing its first checkpoint"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_kill_9_during_pretraining_never_leaves_an_unloadable_file(w, tmp_path):
    """Two runs killed at random moments while checkpoints are being written every epoch."""
    _, prep, _ = w
    rng = random.Random(7)
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        proc = _start_pretrain(prep, out, epochs=200)
        try:
            _wait_for(out / "checkpoints" / "last.pt", proc)
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert _all_outputs_load(out) >= 1
        assert not (out / "metrics.json").exists()
