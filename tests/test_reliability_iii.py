"""Newer-surface failure cases: each refuses with one line naming what and how to fix it."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from aam.cli.__main__ import main as aam_main

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--epochs", "1"]


def _refused(argv, capsys) -> str:
    capsys.readouterr()
    assert aam_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_group_by_with_one_validation_subject_turns_the_margin_off_and_says_so(
        simulated_prepared, tmp_path, capsys):
    import yaml

    prep = tmp_path / "prep"
    shutil.copytree(simulated_prepared, prep)
    meta = pd.read_csv(prep / "metadata.tsv", sep="\t", dtype=str)
    meta["lab"] = "one-lab"  # a column with a single value: one "subject"
    meta.to_csv(prep / "metadata.tsv", sep="\t", index=False)
    train, val = _lists(tmp_path, meta)
    capsys.readouterr()
    assert aam_main(["train", "--data-dir", str(prep), "--output-dir", str(tmp_path / "o"),
                     *TINY, "--train-samples", str(train), "--val-samples", str(val),
                     "--group-by", "lab"]) == 0
    err = capsys.readouterr().err
    assert "--group-by lab gives the 8 validation samples a single subject" in err
    resolved = yaml.safe_load((tmp_path / "o" / "config.resolved.yaml").read_text())
    assert resolved["selection_se"] == 0.0  # recorded as off, not stated while inactive
    assert "standard error" not in (tmp_path / "o" / "model-card.md").read_text()


def _lists(folder, meta):
    ids = meta["sample_id"].tolist()
    (folder / "train.txt").write_text("\n".join(ids[8:]) + "\n")
    (folder / "val.txt").write_text("\n".join(ids[:8]) + "\n")
    return folder / "train.txt", folder / "val.txt"


def test_pretraining_on_all_zero_distances_is_refused(tiny_prepared, tmp_path, capsys):
    prep = tmp_path / "prep"
    shutil.copytree(tiny_prepared, prep)
    with h5py.File(prep / "distances.h5", "r+") as f:
        name = next(k for k in f.keys() if f[k].ndim == 2)
        f[name][...] = np.zeros_like(f[name][...])
    last = _refused(["pretrain", "--data-dir", str(prep), "--output-dir", str(tmp_path / "o"),
                     *TINY, "--val-fraction", "0.4"], capsys)
    assert "every distance between the" in last and "is 0" in last


def test_a_qza_that_is_not_a_zip_is_named_as_such(tmp_path, capsys):
    from pathlib import Path

    data = Path(__file__).parent / "data"
    (tmp_path / "d.qza").write_text("sample\tS1\nS1\t0\n")
    last = _refused(["prepare", "--table", str(data / "tiny-table.biom"), "--metadata",
                     str(data / "tiny-metadata.tsv"), "--distance-matrix",
                     str(tmp_path / "d.qza"), "--metadata-column", "ph", "--output-dir",
                     str(tmp_path / "o")], capsys)
    assert "d.qza is not a QIIME 2 artifact (a .qza is a zip file" in last


def test_predict_without_the_models_categorical_column_says_the_model_needs_it(
        simulated_prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert aam_main(["train", "--data-dir", str(simulated_prepared), "--output-dir", str(run),
                     *TINY, "--group-by", "subject", "--categorical-columns", "category"]) == 0
    meta = pd.read_csv(simulated_prepared / "metadata.tsv", sep="\t", dtype=str)
    meta.drop(columns="category").to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    last = _refused(["predict", "--model", str(run / "model.pt"), "--data-dir",
                     str(simulated_prepared), "--metadata", str(tmp_path / "m.tsv"), "--output",
                     str(tmp_path / "p" / "p.tsv"), "--device", "cpu"], capsys)
    assert "the model was trained with the categorical column(s) category" in last


def test_the_zip_writer_failing_on_a_checkpoint_is_one_line(simulated_prepared, tmp_path,
                                                            monkeypatch, capsys):
    """torch's zip writer reports a full disk as RuntimeError("... unexpected pos ...")."""
    import torch

    import aam.atomic

    real = torch.save

    def full(obj, f, *args, **kwargs):
        if "last.pt" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 "
                               "vs 0")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(aam.atomic, "_disk_full", lambda folder: True)
    last = _refused(["train", "--data-dir", str(simulated_prepared), "--output-dir",
                     str(tmp_path / "o"), *TINY, "--group-by", "subject"], capsys)
    assert "no space left on the device while writing" in last and "last.pt" in last


def test_val_fraction_beside_sample_lists_says_it_is_ignored(simulated_prepared, tmp_path,
                                                             capsys):
    meta = pd.read_csv(simulated_prepared / "metadata.tsv", sep="\t", dtype=str)
    train, val = _lists(tmp_path, meta)
    capsys.readouterr()
    assert aam_main(["train", "--data-dir", str(simulated_prepared), "--output-dir",
                     str(tmp_path / "o"), *TINY, "--train-samples", str(train),
                     "--val-samples", str(val), "--val-fraction", "0.3"]) == 0
    assert "--val-fraction 0.3 is ignored" in capsys.readouterr().err


def test_predict_on_longer_asvs_than_the_model_read_warns(simulated_prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert aam_main(["train", "--data-dir", str(simulated_prepared), "--output-dir", str(run),
                     *TINY, "--group-by", "subject", "--max-bp", "60"]) == 0
    capsys.readouterr()
    assert aam_main(["predict", "--model", str(run / "model.pt"), "--data-dir",
                     str(simulated_prepared), "--output", str(tmp_path / "p" / "p.tsv"),
                     "--device", "cpu"]) == 0
    assert "truncated to the model's max_bp 60" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--normalize-by", "category"], "--normalize-by is ignored"),
    (["--no-attention-path", "--selection-se", "2"], "--selection-se is ignored"),
    (["--task", "classification", "--metadata-column", "category", "--target-transform",
      "minmax"], "--target-transform minmax is ignored"),
    (["--class-weights"], "--class-weights is ignored"),
])
def test_given_flags_that_do_nothing_say_so(flags, message, simulated_prepared, tmp_path, capsys):
    capsys.readouterr()
    assert aam_main(["train", "--data-dir", str(simulated_prepared), "--output-dir",
                     str(tmp_path / "o"), *TINY, "--group-by", "subject", *flags]) == 0
    assert message in capsys.readouterr().err


def test_split_inner_val_fraction_with_a_test_fraction_says_it_is_ignored(simulated_prepared,
                                                                         tmp_path, capsys):
    capsys.readouterr()
    assert aam_main(["split", "--metadata", str(simulated_prepared / "metadata.tsv"),
                     "--group-by", "subject", "--test-fraction", "0.25",
                     "--inner-val-fraction", "0.2", "--output-dir", str(tmp_path / "s")]) == 0
    assert "--inner-val-fraction 0.2 is ignored" in capsys.readouterr().err
