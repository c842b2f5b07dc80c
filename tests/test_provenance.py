"""Resume onto other inputs is refused: another study's prepared data, or other sample lists,
would make the best epoch a comparison of losses of different data (one line naming both)."""

from __future__ import annotations

import shutil

import pytest

from aam.cli.__main__ import main as aam_main
from aam.training.checkpoint import load_checkpoint
from finetune_fixtures import make_prepared

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--epochs", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_prepared, simulated_prepared):
    """Per stage: (the data it trained on, another study's prepared data, the run folder)."""
    root = tmp_path_factory.mktemp("provenance")
    data = {"pretrain": (tiny_prepared, simulated_prepared),  # pretraining needs distances
            "train": (make_prepared(root / "a"), make_prepared(root / "b", samples=36))}
    out = {}
    for stage, (a, b) in data.items():
        out[stage] = (a, b, root / stage)
        assert aam_main([stage, "--data-dir", str(a), "--output-dir", str(root / stage),
                         "--val-fraction", "0.4", *TINY]) == 0
    return out


@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_every_checkpoint_and_model_records_its_inputs(stage, runs):
    run = runs[stage][2]
    final = run / ("encoder.pt" if stage == "pretrain" else "model.pt")
    for path in (final, run / "checkpoints" / "last.pt"):
        saved = load_checkpoint(path).provenance
        assert {"data", "train_samples", "val_samples", "data_dir"} <= set(saved)


@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_resume_onto_another_studys_data_is_refused(stage, runs, tmp_path, capsys):
    a, b, run = runs[stage]
    capsys.readouterr()
    code = aam_main([stage, "--data-dir", str(b), "--output-dir", str(tmp_path / "x"),
                     "--val-fraction", "0.4", *TINY, "--epochs", "2",
                     "--resume-from", str(run / "checkpoints" / "last.pt")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "was trained on other prepared data than this run's" in last
    assert f"prepared in {a}, now {b}" in last and not (tmp_path / "x").exists()


def test_resume_with_another_validation_list_is_refused(runs, tmp_path, capsys):
    a, _, run = runs["train"]
    train = (run / "train_samples.txt").read_text().split()
    val = (run / "val_samples.txt").read_text().split()
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(val[1:]) + "\n")  # one validation sample less
    capsys.readouterr()
    code = aam_main(["train", "--data-dir", str(a), "--output-dir", str(tmp_path / "x"), *TINY,
                     "--epochs", "2", "--train-samples", str(tmp_path / "train.txt"),
                     "--val-samples", str(tmp_path / "val.txt"),
                     "--resume-from", str(run / "checkpoints" / "last.pt")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "was trained on other validation samples than this run's" in last


def test_resume_on_the_same_inputs_still_works(runs, tmp_path):
    a, _, run = runs["train"]
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert aam_main(["train", "--data-dir", str(a), "--output-dir", str(copy),
                     "--val-fraction", "0.4", *TINY, "--epochs", "2",
                     "--resume-from", str(copy / "checkpoints" / "last.pt")]) == 0


def test_prepared_data_and_splits_record_what_they_were_made_from(tiny_prepared, tmp_path):
    import json

    from aam.provenance import file_fingerprint, list_fingerprint

    info = json.loads((tiny_prepared / "prepare.json").read_text())
    assert info["provenance"]["table"] == file_fingerprint(info["inputs"]["table"])
    assert info["provenance"]["tree"] == file_fingerprint(info["inputs"]["tree"])
    meta = tiny_prepared / "metadata.tsv"
    assert aam_main(["split", "--metadata", str(meta), "--val-fraction", "0.4", "--output-dir",
                     str(tmp_path / "s")]) == 0
    splits = json.loads((tmp_path / "s" / "splits.json").read_text())
    assert splits["provenance"]["metadata"] == file_fingerprint(meta)
    val = (tmp_path / "s" / "fold~0" / "val_samples.txt").read_text().split()
    assert splits["provenance"]["lists"][0]["val"] == list_fingerprint(val)
