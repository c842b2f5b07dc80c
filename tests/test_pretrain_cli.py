"""`aam pretrain` end to end on the tiny fixture: outputs, metrics, resume, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aam.cli.options import PRETRAIN_OPTIONS, build_config, overrides_from_args
from aam.cli.pretrain import build_parser, main
from aam.config import PretrainConfig
from aam.training.checkpoint import load_checkpoint

DATA = Path(__file__).parent / "data"
TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "16", "--device", "cpu", "--lr", "0.003"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from aam.cli.prepare import main as prepare

    out = tmp_path_factory.mktemp("prep") / "prepared"
    assert prepare(["--table", str(DATA / "tiny-table.biom"), "--metadata",
                    str(DATA / "tiny-metadata.tsv"), "--tree", str(DATA / "tiny-tree.nwk"),
                    "--min-depth", "10", "--metadata-column", "ph",
                    "--output-dir", str(out)]) == 0
    return out


def test_flags_map_to_config_fields():
    args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o",
                                      "--attention-layers", "3", "--asv-layers", "1",
                                      "--no-bf16", "--nucleotide-mask-rate", "0.2"])
    cfg = build_config(PretrainConfig, args, PRETRAIN_OPTIONS)
    assert (cfg.model.nucleotide_layers, cfg.model.asv_layers, cfg.model.sample_layers) == (3, 1, 3)
    assert cfg.train.bf16 is False and cfg.nucleotide_mask_rate == 0.2
    assert overrides_from_args(args, PRETRAIN_OPTIONS)["model"]["asv_layers"] == 1


def test_odd_batch_size_is_one_line_error(capsys, tmp_path):
    code = main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                 "--batch-size", "7"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == ("aam pretrain: error: batch_size must be even and at least 2 (the distance "
                      "loss compares every pair of samples in a batch), got 7.")


def test_pretrain_writes_outputs_and_resumes(prepared, tmp_path):
    out = tmp_path / "run"
    assert main(["--data-dir", str(prepared), "--output-dir", str(out), "--epochs", "2",
                 "--val-fraction", "0.4", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    train = (out / "train_samples.txt").read_text().split()
    val = (out / "val_samples.txt").read_text().split()
    assert metrics["n_train"] == len(train) and metrics["n_val"] == len(val) >= 2
    assert not set(train) & set(val)
    assert metrics["epochs_run"] == 2 and metrics["config"]["model"]["embedding_dim"] == 16
    assert {"val_loss", "val_spearman", "val_nuc_accuracy",
            "val_most_frequent_base_rate"} <= set(metrics["best"])
    encoder = load_checkpoint(out / "encoder.pt", "encoder")
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert encoder.epoch == best["epoch"] == metrics["best_epoch"]
    assert list(out.glob("tensorboard/events.out.tfevents.*"))
    assert "max_bp: " in (out / "config.resolved.yaml").read_text()
    assert main(["--data-dir", str(prepared), "--output-dir", str(out), "--epochs", "3",
                 "--val-fraction", "0.4", *TINY,
                 "--resume-from", str(out / "checkpoints" / "last.pt")]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3


def test_unknown_sample_in_list_is_named(prepared, tmp_path, capsys):
    (tmp_path / "train.txt").write_text("1234.3\nnope1\n")
    (tmp_path / "val.txt").write_text("1234.4\n1234.5\n")
    code = main(["--data-dir", str(prepared), "--output-dir", str(tmp_path / "o"),
                 "--train-samples", str(tmp_path / "train.txt"),
                 "--val-samples", str(tmp_path / "val.txt"), *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert "1 samples in --train-samples " in err
    assert "train.txt are not in the prepared table (first 1: nope1)" in err


def test_resume_with_other_model_settings_is_refused(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data-dir", str(prepared), "--output-dir", str(out), "--epochs", "1",
                 "--val-fraction", "0.4", *TINY]) == 0
    code = main(["--data-dir", str(prepared), "--output-dir", str(out), "--epochs", "2",
                 "--val-fraction", "0.4", *TINY, "--embedding-dim", "32",
                 "--resume-from", str(out / "checkpoints" / "last.pt")])
    assert code == 2
    assert "--embedding-dim 32 differs from 16 in the checkpoint" in capsys.readouterr().err
