"""``aam train`` entry point: help text, defaults from prepare.json, warnings, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aam.cli.train import main
from finetune_fixtures import make_prepared

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--token-limit", "8", "--epochs", "1", "--device", "cpu", "--cross-attn-heads", "2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("cli"))


def test_categorical_help_prints_decision_tree_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--categorical-help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for hint in ("concat", "--conditional-output-scaling", "gmu", "cross-attention", "perceiver"):
        assert hint in text


def test_train_uses_prepare_json_defaults_and_writes_outputs(prepared, tmp_path):
    out = tmp_path / "out"
    assert main(["--data-dir", str(prepared), "--output-dir", str(out), *TINY,
                 "--categorical-fusion", "cross-attention", "--target-transform", "zscore",
                 "--fold", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["target_column"] == "target"
    assert metrics["config"]["data"]["categorical_columns"] == ["category", "batch"]
    assert metrics["fold"] == "3" and metrics["config"]["fusion"]["name"] == "cross-attention"
    table = pd.read_csv(out / "val_predictions.tsv", sep="\t")
    assert len(table) == metrics["n"]


def test_unknown_fusion_is_one_line_error(prepared, tmp_path, capsys):
    code = main(["--data-dir", str(prepared), "--output-dir", str(tmp_path), *TINY,
                 "--categorical-fusion", "gmu2"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    from aam.models.fusion import FUSIONS

    assert err == ("aam train: error: Unknown fusion 'gmu2'. Choose one of: "
                   f"{', '.join(sorted(FUSIONS))}.")
    assert {"add", "concat", "cross-attention", "gmu", "perceiver"} <= set(FUSIONS)


def test_fusion_without_categorical_columns_and_count_penalty_warn(prepared, tmp_path, capsys):
    code = main(["--data-dir", str(prepared), "--output-dir", str(tmp_path), *TINY,
                "--categorical-columns", "", "--categorical-fusion", "gmu",
                "--no-count-prediction", "--count-penalty", "2"])
    assert code == 0
    err = capsys.readouterr().err
    assert "--categorical-fusion gmu is ignored: no --categorical-columns" in err
    assert "--count-penalty is ignored with --no-count-prediction" in err
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["count_prediction"] is False and config["data"]["categorical_columns"] == []


def test_cross_attn_heads_must_divide_dim(prepared, tmp_path, capsys):
    code = main(["--data-dir", str(prepared), "--output-dir", str(tmp_path), *TINY,
                 "--categorical-fusion", "cross-attention", "--cross-attn-heads", "3"])
    assert code == 2
    assert "--cross-attn-heads (3) must divide embedding_dim (16)" in capsys.readouterr().err


def test_missing_data_dir_is_reported(tmp_path, capsys):
    code = main(["--data-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path), *TINY])
    assert code == 2
    assert "prepared file not found" in capsys.readouterr().err


def test_config_readme_holds_the_fusion_table_that_categorical_help_prints():
    from pathlib import Path

    from aam.cli.categorical_help import fusion_guide, markdown_table
    from aam.models.fusion import FUSIONS

    readme = (Path(__file__).resolve().parents[1] / "config" / "README.md").read_text()
    assert markdown_table() in readme
    named = {flags.split()[1] for _, flags, _ in fusion_guide()}
    assert named == set(FUSIONS)  # every registered fusion is in the guide, no other
