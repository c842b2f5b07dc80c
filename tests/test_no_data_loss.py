"""No command deletes or overwrites what it did not write.

Every command, pointed at an output path that already holds a user's files, leaves those files
unchanged: it writes beside them, and refuses (one line, exit 2, nothing moved) when one of its
own output names is taken by a file or folder aam did not write. A rerun into a folder aam wrote
replaces its own outputs (the folder's ``.aam-outputs.json`` records them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aam.cli.__main__ import main as aam_main
from aam.transaction import MANIFEST_NAME, output_transaction
from test_compare import fabricate

DATA = Path(__file__).parent / "data"
TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--epochs", "1"]


def _users_folder(folder: Path, *taken: str) -> dict:
    """A folder of a user's: notes, a sub-folder of data, and files named ``taken``; returns
    a snapshot of it."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "data" / "raw.csv").write_text("a,b\n1,2\n")
    for name in taken:
        (folder / name).write_text("the user's, not aam's\n")
    return _snapshot(folder)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*")) if p.name != MANIFEST_NAME}


def _refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert aam_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_prepared):
    """A trained model on the tiny prepared data, and its sample lists."""
    root = tmp_path_factory.mktemp("owned")
    run = root / "run"
    assert aam_main(["train", "--data-dir", str(tiny_prepared), "--output-dir", str(run),
                     "--val-fraction", "0.4", *TINY]) == 0
    return tiny_prepared, run


def _commands(made, out: Path) -> dict[str, list[str]]:
    prepared, run = made
    samples = ["--train-samples", str(run / "train_samples.txt"), "--test-samples",
               str(run / "val_samples.txt")]
    return {
        "simulate": ["simulate", "--output-dir", str(out), "--samples", "12", "--asvs", "20"],
        "prepare": ["prepare", "--table", str(DATA / "tiny-table.biom"), "--metadata",
                    str(DATA / "tiny-metadata.tsv"), "--tree", str(DATA / "tiny-tree.nwk"),
                    "--min-depth", "10", "--metadata-column", "ph", "--output-dir", str(out)],
        "split": ["split", "--metadata", str(prepared / "metadata.tsv"), "--val-fraction", "0.4",
                  "--output-dir", str(out)],
        "pretrain": ["pretrain", "--data-dir", str(prepared), "--output-dir", str(out),
                     "--val-fraction", "0.4", *TINY],
        "train": ["train", "--data-dir", str(prepared), "--output-dir", str(out),
                  "--val-fraction", "0.4", *TINY],
        "explain": ["explain", "--model", str(run / "model.pt"), "--data-dir", str(prepared),
                    "--output-dir", str(out), "--steps", "4"],
        "predict": ["predict", "--model", str(run / "model.pt"), "--data-dir", str(prepared),
                    "--device", "cpu", "--output", str(out / "predictions.tsv")],
        "rf-baseline": ["rf-baseline", "--data-dir", str(prepared), "--metadata-column", "ph",
                        *samples, "--output", str(out / "predictions.tsv")],
        "linear-baseline": ["linear-baseline", "--data-dir", str(prepared), "--metadata-column",
                            "ph", *samples, "--output", str(out / "predictions.tsv")],
    }


#: Per command, one output name it writes into its folder (taken by a user's file, it refuses).
TAKEN = {"simulate": "table.biom", "prepare": "metadata.tsv", "split": "splits.json",
         "pretrain": "metrics.json", "train": "metrics.json", "explain": "attributions.tsv",
         "predict": "predictions.tsv", "rf-baseline": "predictions.tsv",
         "linear-baseline": "predictions.tsv"}


@pytest.mark.parametrize("command", sorted(TAKEN))
def test_a_users_files_beside_the_outputs_are_kept(command, made, tmp_path):
    out = tmp_path / "mine"
    before = _users_folder(out)
    assert aam_main(_commands(made, out)[command]) == 0
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) > len(before)  # the outputs were written beside the user's files
    assert aam_main(_commands(made, out)[command]) == 0  # a rerun replaces its own outputs


@pytest.mark.parametrize("command", sorted(TAKEN))
def test_a_users_file_with_an_output_name_is_never_replaced(command, made, tmp_path, capsys):
    out = tmp_path / "mine"
    before = _users_folder(out, TAKEN[command])
    last = _refused(_commands(made, out)[command], capsys)
    assert f"{out / TAKEN[command]} already exists and was not written by aam" in last
    assert _snapshot(out) == before


@pytest.mark.parametrize("command", ["predict", "rf-baseline", "linear-baseline"])
def test_output_file_that_is_a_users_folder_is_refused_and_kept(command, made, tmp_path,
                                                                capsys):
    out = tmp_path / "results"
    before = _users_folder(out)
    argv = [a if a != str(out / "predictions.tsv") else str(out)
            for a in _commands(made, tmp_path / "x")[command]]
    argv[argv.index("--output") + 1] = str(out)
    last = _refused(argv, capsys)
    assert f"--output {out} is an existing folder" in last
    assert _snapshot(out) == before


def test_compare_keeps_a_users_files(tmp_path, capsys):
    fabricate(tmp_path / "results", folds=1, seeds=(0,), n=20)
    out = tmp_path / "report"
    argv = ["compare", "--results-dir", str(tmp_path / "results"), "--output-dir", str(out),
            "--n-bootstrap", "50", "--no-figures"]
    before = _users_folder(out)
    assert aam_main(argv) == 0
    assert {k: v for k, v in _snapshot(out).items() if k in before} == before
    before = _users_folder(tmp_path / "taken", "comparison.tsv")
    argv[argv.index("--output-dir") + 1] = str(tmp_path / "taken")
    assert "was not written by aam" in _refused(argv, capsys)
    assert _snapshot(tmp_path / "taken") == before


def test_a_users_folder_named_like_an_output_folder_is_never_swapped_out(tmp_path):
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard" / "mine.txt").write_text("kept\n")
    with pytest.raises(Exception, match="was not written by aam"):
        with output_transaction(out) as tx:
            (tx.staging / "tensorboard").mkdir()
            (tx.staging / "metrics.json").write_text("{}\n")
    assert (out / "tensorboard" / "mine.txt").read_text() == "kept\n"
    assert not (out / "metrics.json").exists()


def test_a_failed_commit_puts_the_old_outputs_back(tmp_path, monkeypatch):
    """The commit is all or nothing: when moving a new entry in fails, the entries already
    moved go back to staging and the old ones come back."""
    import os

    out = tmp_path / "run"
    names = ("a.txt", "metrics.json", "model.pt")

    def write(tx, text):
        for name in names:
            (tx.staging / name).write_text(f"{text} {name}\n")

    with output_transaction(out) as tx:
        write(tx, "old")
    real = os.replace

    def fail_on_model(src, dst):
        if Path(dst).name == "model.pt" and ".aam-staging" in str(src):
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_model)
    with pytest.raises(OSError, match="No space left"):
        with output_transaction(out) as tx:
            write(tx, "new")
    monkeypatch.undo()
    left = {p.name: p.read_text() for p in out.iterdir() if p.name != MANIFEST_NAME}
    assert left == {n: f"old {n}\n" for n in names}


def test_an_empty_folder_named_like_an_output_folder_is_replaced(tmp_path):
    """Snakemake makes the folders of a job's outputs before the job runs: nothing to lose."""
    out = tmp_path / "splits"
    (out / "fold~0").mkdir(parents=True)
    with output_transaction(out) as tx:
        (tx.staging / "fold~0").mkdir()
        (tx.staging / "fold~0" / "train_samples.txt").write_text("a\n")
    assert (out / "fold~0" / "train_samples.txt").read_text() == "a\n"


def test_a_rerun_that_no_longer_writes_a_file_removes_its_old_one(tmp_path):
    """A folder-writing command owns its output set: what it wrote before and no longer
    writes goes; what another command wrote there (predict's file in a run folder) stays."""
    out = tmp_path / "run"
    with output_transaction(out, command="train", sole_owner=True) as tx:
        for name in ("model.pt", "old-figure.svg"):
            (tx.staging / name).write_text("1\n")
    with output_transaction(out, files=["predictions.tsv"], command="predict") as tx:
        (tx.staging / "predictions.tsv").write_text("p\n")
    (out / "notes.txt").write_text("mine\n")
    with output_transaction(out, command="train", sole_owner=True) as tx:
        (tx.staging / "model.pt").write_text("2\n")
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST_NAME) == [
        "model.pt", "notes.txt", "predictions.tsv"]
