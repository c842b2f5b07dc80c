"""One name per setting: a flag is named after its config field, every setting has a flag, and
every key of every workflow section and every ablation column parses with its command's parser."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from aam.cli.options import FINETUNE_OPTIONS, PRETRAIN_OPTIONS, options_of
from aam.config import RUNTIME, FinetuneConfig, PretrainConfig, flag_of, settable_fields

REPO = Path(__file__).resolve().parents[1]
TABLES = {"pretrain": (PRETRAIN_OPTIONS, PretrainConfig), "train": (FINETUNE_OPTIONS,
                                                                    FinetuneConfig)}
# fields only fine-tuning reads, though they sit in the shared data section
FINETUNE_ONLY = {"data.target_transform", "data.normalize_by", "data.categorical_columns"}


@pytest.mark.parametrize("command", sorted(TABLES))
def test_every_flag_is_named_after_its_config_field(command):
    options, _ = TABLES[command]
    for o in options:
        if len(o.fields) == 1:  # --attention-layers sets three fields at once
            assert o.flag == flag_of(o.fields[0]), o


@pytest.mark.parametrize("command", sorted(TABLES))
def test_every_setting_has_a_flag(command):
    options, cls = TABLES[command]
    flagged = {f for o in options for f in o.fields}
    missing = set(settable_fields(cls)) - flagged - RUNTIME
    assert missing == (FINETUNE_ONLY if command == "pretrain" else set())
    assert len({o.flag for o in options}) == len(options)


def test_a_new_config_field_becomes_a_flag_with_no_other_edit():
    from dataclasses import field, make_dataclass

    from aam.config import TrainConfig

    extended = make_dataclass("Extended", [("ema_decay", float, field(
        default=0.0, metadata={"help": "EMA of the weights"}))], bases=(TrainConfig,),
        frozen=True)
    holder = make_dataclass("Holder", [("train", extended, field(default_factory=extended))],
                            frozen=True)
    [row] = [o for o in options_of(holder) if o.fields == ("train.ema_decay",)]
    assert (row.flag, row.type, row.help) == ("--ema-decay", float, "EMA of the weights")


# --- the workflow's keys are the flags' names ---------------------------------------------

REQUIRED = {  # the path arguments each rule passes itself
    "simulate": ["--output-dir", "o"],
    "prepare": ["--table", "t", "--metadata", "m", "--output-dir", "o"],
    "split": ["--metadata", "m", "--output-dir", "o"],
    "pretrain": ["--data-dir", "d", "--output-dir", "o"],
    "train": ["--data-dir", "d", "--output-dir", "o"],
    "predict": ["--model", "m", "--data-dir", "d", "--output", "o"],
    "rf-baseline": ["--data-dir", "d", "--metadata-column", "c", "--train-samples", "t",
                    "--val-samples", "v", "--output", "o"],
    "compare": ["--results-dir", "r", "--output-dir", "o"],
}


def _with_defaults(config: dict) -> dict:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    out = {}
    for section, spec in schema["properties"].items():
        if spec.get("type") == "object":
            defaults = {k: v["default"] for k, v in spec["properties"].items() if "default" in v}
            out[section] = {**defaults, **(config.get(section) or {})}
        else:
            out[section] = config.get(section, spec.get("default"))
    return out


def _parse(command: str, flags: str):
    from aam.cli.__main__ import COMMANDS
    from workflow_checks import parse_or_fail

    parser = importlib.import_module(COMMANDS[command][0]).build_parser()
    return parse_or_fail(parser, [*REQUIRED[command], *shlex.split(flags)], command)


CONFIG_FILES = sorted(str(p.relative_to(REPO)) for p in [
    REPO / "config" / "config.yaml", *(REPO / "config").glob("examples/*.yaml"),
    REPO / "tests" / "data" / "config.yaml"])


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_every_workflow_key_parses_with_its_command(config_file, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    import workflow_args as wa
    from workflow_checks import read_ablation_table

    cfg = _with_defaults(yaml.safe_load((REPO / config_file).read_text()))
    _parse("simulate", wa.cli_flags(cfg["simulate"]))
    _parse("prepare", wa.prepare_flags(cfg["prepare"]))
    _parse("split", wa.split_flags(cfg["split"]))
    _parse("pretrain", wa.pretrain_flags(cfg["model"], cfg["pretrain"]))
    _parse("rf-baseline", wa.cli_flags(cfg["rf"]))
    _parse("compare", wa.cli_flags(cfg["compare"]))
    table = read_ablation_table(REPO / cfg["ablations"])
    for row in table.to_dict("records"):
        args = _parse("train", wa.train_flags(row, cfg))
        if "categorical-fusion" in row:
            assert args.categorical_fusion == row["categorical-fusion"]
        _parse("predict", wa.predict_flags(row, cfg["predict"]))
    wa_keys = set(cfg["pretrain"]) | set(cfg["finetune"]) | set(cfg["model"])
    assert wa_keys  # every key went through a parser above


def test_false_becomes_no_flag_and_columns_may_be_any_train_flag(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_args import cli_flags, train_flags

    assert cli_flags({"count_prediction": False, "bf16": True}) == "--no-count-prediction --bf16"
    from workflow_args import prepare_flags

    prepare = {"target": "target", "metadata_column": "ph", "task": "regression"}
    assert _parse("prepare", prepare_flags(prepare)).metadata_column == "ph"
    assert _parse("prepare", prepare_flags({**prepare, "metadata_column": ""})).metadata_column \
        == "target"  # the published alias
    for value in (False, True):  # false is a setting too: --no-flag, never dropped
        args = _parse("prepare", prepare_flags({**prepare, "allow_fractional_counts": value,
                                                "min_depth": 0, "rarefy_depth": None}))
        assert (args.allow_fractional_counts, args.min_depth, args.rarefy_depth) == (value, 0,
                                                                                    None)
    config = {"prepare": {"task": "regression", "categorical_columns": ["category"]},
              "model": {}, "finetune": {"freeze_base": True}}
    row = {"categorical-fusion": "gmu", "freeze-base": "false", "lr": "0.0003",
           "pretrained": "true"}
    args = _parse("train", train_flags(row, config))
    assert (args.categorical_fusion, args.freeze_base, args.lr) == ("gmu", False, 0.0003)


def test_a_misspelt_column_stops_the_workflow_with_one_line(monkeypatch):
    import pandas as pd
    from snakemake.exceptions import WorkflowError

    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_checks import check_aam_flags

    cfg = _with_defaults(yaml.safe_load((REPO / "tests" / "data" / "config.yaml").read_text()))
    check_aam_flags(cfg, pd.DataFrame({"categorical-fusion": ["gmu"], "lr": ["0.001"]}))
    with pytest.raises(WorkflowError, match=r"unrecognized arguments: --lrr 0\.001"):
        check_aam_flags(cfg, pd.DataFrame({"categorical-fusion": ["gmu"], "lrr": ["0.001"]}))
    with pytest.raises(WorkflowError, match=r"pretrain sections of the config.*--epoch"):
        check_aam_flags({**cfg, "pretrain": {**cfg["pretrain"], "epoch": 3}},
                        pd.DataFrame({"categorical-fusion": ["gmu"]}))


def test_a_bad_value_in_a_column_stops_the_workflow(monkeypatch):
    import pandas as pd
    from snakemake.exceptions import WorkflowError

    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_checks import check_aam_flags

    cfg = _with_defaults(yaml.safe_load((REPO / "tests" / "data" / "config.yaml").read_text()))
    with pytest.raises(WorkflowError, match="Unknown fusion 'gmu2'. Choose one of: add, concat"):
        check_aam_flags(cfg, pd.DataFrame({"categorical-fusion": ["gmu2"]}))


# --- one list per choice ---------------------------------------------------------------------

def test_every_choice_has_one_list_that_schemas_and_flags_read():
    from aam.cli.train import build_parser
    from aam.config import ASV_SAMPLING, REGRESSION_LOSSES, TARGET_TRANSFORMS
    from aam.data.target_transforms import TRANSFORMS
    from aam.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, metric_names
    from aam.models.fusion import FUSIONS
    from aam.training import finetune_objective

    assert set(TARGET_TRANSFORMS) == set(TRANSFORMS)
    assert set(REGRESSION_LOSSES) == set(finetune_objective.REGRESSION_LOSSES)
    assert metric_names("regression") == REGRESSION_METRICS
    assert metric_names("classification") == CLASSIFICATION_METRICS
    choices = {a.dest: a.choices for a in build_parser()._actions}
    assert set(choices["target_transform"]) == set(TRANSFORMS)
    assert set(choices["asv_sampling"]) == set(ASV_SAMPLING)
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]
    assert set(props["finetune"]["properties"]["target_transform"]["enum"]) == set(TRANSFORMS)
    assert set(props["pretrain"]["properties"]["asv_sampling"]["enum"]) == set(ASV_SAMPLING)
    ablation = yaml.safe_load((REPO / "workflow" / "schemas" /
                               "ablations.schema.yaml").read_text())["properties"]
    assert set(ablation["target-transform"]["enum"]) <= set(TRANSFORMS)  # zscore-category: a column
    assert set(ablation["asv-sampling"]["enum"]) == set(ASV_SAMPLING)
    for name in FUSIONS:  # every registered fusion is a valid ablation cell
        assert re.fullmatch(ablation["categorical-fusion"]["pattern"], name)
    assert "zscore-category" in TRANSFORMS and {"gmu", "perceiver"} <= set(FUSIONS)


@pytest.mark.parametrize("old,new", [("fusion", "categorical-fusion"), ("freeze", "freeze-base"),
                                     ("sampling", "asv-sampling"),
                                     ("transform", "target-transform"),
                                     ("counts", "count-prediction")])
def test_a_short_ablation_column_names_its_flag_in_one_line(old, new, monkeypatch):
    import pandas as pd
    from snakemake.exceptions import WorkflowError

    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_checks import check_ablation_columns

    check_ablation_columns(pd.DataFrame({new: ["x"], "pretrained": ["true"]}), "a.tsv")
    with pytest.raises(WorkflowError, match=rf"^a\.tsv: the column '{old}' is now '{new}' "):
        check_ablation_columns(pd.DataFrame({old: ["x"]}), "a.tsv")


def test_ablation_folders_name_each_row_by_its_flags_and_read_back(monkeypatch):
    import pandas as pd

    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_args import ablation_folders, ablation_settings

    table = pd.DataFrame({"categorical-fusion": ["cross-attention", "gmu"],
                          "freeze-base": ["true", ""], "lr": ["0.001", "3e-4"]})
    folders = ablation_folders(table)
    assert folders == ["categorical-fusion~cross-attention_freeze-base~true_lr~0.001",
                       "categorical-fusion~gmu_freeze-base~_lr~3e-4"]
    assert [ablation_settings(f) for f in folders] == table.to_dict("records")
