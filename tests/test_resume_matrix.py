"""Resume, one rule for `aam pretrain` and `aam train`: the checkpoint's config is the base,
schedule flags override (logged once, recorded), model/data flags that differ are refused before
anything is written; into the same or a new output folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from aam.cli.pretrain import main as pretrain_main
from aam.cli.train import main as train_main
from finetune_fixtures import make_prepared

PRETRAIN_TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
                 "--batch-size", "4", "--token-limit", "16", "--device", "cpu", "--lr", "0.003",
                 "--val-fraction", "0.4"]
TRAIN_TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
              "--token-limit", "8", "--device", "cpu", "--lr", "0.003",
              "--categorical-fusion", "gmu", "--target-transform", "zscore-category",
              "--normalize-by", "category"]
STAGES = {
    # stage: (main, first-run flags, a changed model-defining flag, its message, final model)
    "pretrain": (pretrain_main, PRETRAIN_TINY, ["--embedding-dim", "32"],
                 "--embedding-dim 32 differs from 16 in the checkpoint", "encoder.pt"),
    "train": (train_main, TRAIN_TINY, ["--categorical-fusion", "concat"],
              "--categorical-fusion concat differs from gmu in the checkpoint", "model.pt"),
}


@pytest.fixture(scope="module")
def data(tiny_prepared, tmp_path_factory):
    return {"pretrain": tiny_prepared,
            "train": make_prepared(tmp_path_factory.mktemp("resume-train"))}


@pytest.fixture(scope="module")
def first_runs(data, tmp_path_factory):
    """One finished 1-epoch run per stage (lr 0.003, not the default)."""
    runs = {}
    for stage, (main, flags, *_rest) in STAGES.items():
        out = tmp_path_factory.mktemp(f"first-{stage}") / "run"
        assert main(["--data-dir", str(data[stage]), "--output-dir", str(out), "--epochs", "1",
                     *flags]) == 0
        runs[stage] = out
    return runs


def _resume(stage, data, first_runs, tmp_path, into, flags):
    """Resume a copy of the stage's first run into itself ("same") or a new folder ("new")."""
    source = tmp_path / "source"
    shutil.copytree(first_runs[stage], source)
    out = source if into == "same" else tmp_path / "new"
    main = STAGES[stage][0]
    code = main(["--data-dir", str(data[stage]), "--output-dir", str(out),
                 "--resume-from", str(source / "checkpoints" / "last.pt"), *flags])
    return code, out, source


def _resolved(out: Path) -> dict:
    return yaml.safe_load((out / "config.resolved.yaml").read_text())


def _peak_lrs(out: Path) -> set:
    """Peak learning rates of the base parameters (the categorical ones have their own,
    ``categorical_lr``)."""
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    return {g["initial_lr"] for g in last["optimizer_state"]["param_groups"]
            if g.get("name", "base") == "base"}


@pytest.mark.parametrize("into", ["same", "new"])
@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_resume_without_flags_keeps_the_checkpoint_config(stage, into, data, first_runs,
                                                          tmp_path, capsys):
    code, out, _ = _resume(stage, data, first_runs, tmp_path, into, ["--epochs", "2"])
    assert code == 0, capsys.readouterr().err
    cfg = _resolved(out)
    assert cfg["train"]["lr"] == 0.003 and cfg["train"]["epochs"] == 2
    assert cfg["model"]["embedding_dim"] == 16 and cfg["model"]["asv_layers"] == 1
    if stage == "train":
        assert cfg["fusion"]["name"] == "gmu"
        assert cfg["data"]["target_transform"] == "zscore-category"
        assert cfg["data"]["normalize_by"] == ["category"]
    assert _peak_lrs(out) == {0.003}
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    assert (out / STAGES[stage][4]).is_file() and (out / "checkpoints" / "best.pt").is_file()
    err = capsys.readouterr().err
    assert err.count("epochs 1 (checkpoint) -> 2 (--epochs)") == 1 and "lr 0.003 (" not in err


@pytest.mark.parametrize("into", ["same", "new"])
@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_resume_with_lr_overrides_logs_once_and_records(stage, into, data, first_runs,
                                                        tmp_path, capsys):
    code, out, _ = _resume(stage, data, first_runs, tmp_path, into,
                           ["--epochs", "2", "--lr", "0.0001"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("lr 0.003 (checkpoint) -> 0.0001 (--lr)") == 1
    assert _resolved(out)["train"]["lr"] == 0.0001
    assert _peak_lrs(out) == {0.0001}
    assert _resolved(out)["model"]["embedding_dim"] == 16


@pytest.mark.parametrize("into", ["same", "new"])
@pytest.mark.parametrize("stage", ["pretrain", "train"])
def test_resume_with_changed_model_flag_is_refused_before_writing(stage, into, data, first_runs,
                                                                  tmp_path, capsys):
    source_files = {p.relative_to(first_runs[stage]): p.read_bytes()
                    for p in first_runs[stage].rglob("*") if p.is_file()}
    code, out, source = _resume(stage, data, first_runs, tmp_path, into,
                                ["--epochs", "2", *STAGES[stage][2]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert STAGES[stage][3] in err[-1] and err[-1].startswith(f"aam {stage}: error:")
    after = {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert after == source_files  # the resumed folder is untouched
    if into == "new":
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("flags, message", [
    (["--metadata-column", "batch", "--task", "classification"],
     "--metadata-column batch differs from target in the checkpoint"),
    (["--task", "classification"], "--task classification differs from regression"),
    (["--target-transform", "log-zscore"],
     "--target-transform log-zscore differs from zscore-category in the checkpoint"),
    (["--categorical-columns", "batch"], "--categorical-columns batch differs from category,batch"),
    (["--embedding-dim", "32"], "--embedding-dim 32 differs from 16 in the checkpoint"),
    (["--normalize-by", "batch"], "--normalize-by batch differs from category"),
])
def test_resume_refuses_other_target_task_transform_columns(flags, message, data, first_runs,
                                                            tmp_path, capsys):
    code, _, _ = _resume("train", data, first_runs, tmp_path, "new", flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1]


def test_resumed_zscore_category_run_predicts_as_before(data, first_runs, tmp_path, capsys):
    """No flags at all: the fitted per-category transform comes from the checkpoint, so the
    unchanged weights give the same validation predictions."""
    code, out, source = _resume("train", data, first_runs, tmp_path, "new", [])
    assert code == 0, capsys.readouterr().err
    before = pd.read_csv(source / "val_predictions.tsv", sep="\t")
    after = pd.read_csv(out / "val_predictions.tsv", sep="\t")
    pd.testing.assert_frame_equal(before, after)
    assert _resolved(out)["data"]["target_transform"] == "zscore-category"


def test_config_file_keys_count_as_given_on_resume(tmp_path):
    """`--config` keys are settings the user gave: a schedule key overrides, a model key that
    differs is refused naming the file as its source; keys it does not hold keep the
    checkpoint's values (no training needed: a synthetic checkpoint config)."""
    from aam.cli.options import FINETUNE_OPTIONS, build_training_config
    from aam.cli.train import build_parser
    from aam.config import FinetuneConfig, ModelConfig, TrainConfig, to_dict
    from aam.errors import InputError
    from aam.training.checkpoint import Checkpoint, save_checkpoint

    saved = FinetuneConfig(model=ModelConfig(embedding_dim=16, attention_heads=2),
                           train=TrainConfig(lr=0.003, parallel="fsdp"), target_column="ph")
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, Checkpoint("predictor", to_dict(saved), {},
                                     optimizer_state={"state": {}, "param_groups": []}))
    parser = build_parser()

    def resume(yaml_text, *flags):
        (tmp_path / "c.yaml").write_text(yaml_text)
        args = parser.parse_args(["--data-dir", "d", "--output-dir", "o", "--resume-from",
                                  str(ckpt), "--config", str(tmp_path / "c.yaml"), *flags])
        return build_training_config(FinetuneConfig, args, FINETUNE_OPTIONS, args.config)

    cfg = resume("train:\n  lr: 0.001\n")
    assert (cfg.train.lr, cfg.model.embedding_dim, cfg.target_column) == (0.001, 16, "ph")
    assert cfg.train.parallel == "auto"  # where a run executes is never inherited
    assert resume("train:\n  lr: 0.001\n", "--lr", "0.0002").train.lr == 0.0002  # flags win
    # the head's refit acts after selection: a resumed run may turn it off (or on)
    assert resume("", "--no-abundance-head-refit").abundance_head_refit is False
    with pytest.raises(InputError, match=r"^model.embedding_dim 8 \(--config\) differs from 16 "
                                         r"in the checkpoint"):
        resume("model:\n  embedding_dim: 8\n  attention_heads: 2\n")
