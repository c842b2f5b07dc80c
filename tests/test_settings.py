"""One configuration system: every setting is one field, and every command's flags, the workflow
schema, config/README.md's key table and the resume rules are generated from the fields."""

from __future__ import annotations

import dataclasses
import importlib
import shlex
from pathlib import Path

import pytest

from aam.cli import gen_docs
from aam.cli.__main__ import COMMANDS
from aam.cli.options import add_options, build_config, build_training_config, options_of
from aam.config import RUNTIME, SCHEDULE, FinetuneConfig
from aam.settings import Shorthand, schedule_settings, setting, settings_of

REPO = Path(__file__).resolve().parents[1]
#: The path arguments each rule passes itself (the settings are generated flags).
PATHS = {
    "simulate": ["--output-dir", "o"],
    "prepare": ["--table", "t", "--metadata", "m", "--metadata-column", "c", "--output-dir", "o"],
    "split": ["--metadata", "m", "--output-dir", "o"],
    "predict": ["--model", "m", "--data-dir", "d", "--output", "o"],
    "explain": ["--model", "m", "--data-dir", "d", "--output-dir", "o"],
    "rf-baseline": ["--data-dir", "d", "--metadata-column", "c", "--train-samples", "t",
                    "--test-samples", "v", "--output", "o"],
    "linear-baseline": ["--data-dir", "d", "--metadata-column", "c", "--train-samples", "t",
                        "--test-samples", "v", "--output", "o"],
    "compare": ["--results-dir", "r", "--output-dir", "o"],
}


@pytest.mark.parametrize("path", [gen_docs.SCHEMA, gen_docs.ABLATION_SCHEMA, gen_docs.README],
                         ids=lambda p: p.name)
def test_generated_files_are_current(path):
    expected = gen_docs.outputs()[REPO / path]
    current = (REPO / path).read_text(encoding="utf-8")
    assert current == expected, (f"{path} is not current: run `{gen_docs.REGENERATE}` and "
                                 "commit the result.")


def test_the_check_mode_names_a_stale_file(tmp_path, monkeypatch, capsys):
    for path in (gen_docs.SCHEMA, gen_docs.ABLATION_SCHEMA, gen_docs.README):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text((REPO / path).read_text(encoding="utf-8"))
    monkeypatch.setattr(gen_docs, "REPO", tmp_path)
    assert gen_docs.main(["--check"]) == 0
    (tmp_path / gen_docs.SCHEMA).write_text("stale\n")
    assert gen_docs.main(["--check"]) == 1
    assert capsys.readouterr().err.strip() == (
        "workflow/schemas/config.schema.yaml is not current: run `python -m aam.cli.gen_docs`.")
    assert gen_docs.main([]) == 0 and gen_docs.main(["--check"]) == 0  # rewritten


def _extended():
    """FinetuneConfig with one more setting, declared as a new field would be."""
    return dataclasses.make_dataclass(
        "Extended", [("ema_decay", float, setting(0.0, "decay of the weights' moving average",
                                                   schedule=True))],
        bases=(FinetuneConfig,), frozen=True)


def test_a_new_train_setting_is_a_flag_a_schema_entry_and_a_docs_row(monkeypatch):
    import argparse

    extended = _extended()
    options = options_of(extended, "train")
    parser = argparse.ArgumentParser()
    add_options(parser, options)
    args = parser.parse_args(["--ema-decay", "0.99"])
    assert build_training_config(extended, args, options).ema_decay == 0.99
    assert "ema_decay" in schedule_settings(extended)  # a resume may change it

    sections = tuple(dataclasses.replace(s, sources=((extended, "train", ""),))
                     if s.name == "finetune" else s for s in gen_docs.SECTIONS)
    monkeypatch.setattr(gen_docs, "SECTIONS", sections)
    entry = gen_docs.build_schema()["properties"]["finetune"]["properties"]["ema_decay"]
    assert entry == {"type": "number", "description": "Decay of the weights' moving average. "
                                                      "Flag: `--ema-decay`."}
    monkeypatch.setattr(gen_docs, "FinetuneConfig", extended)
    column = gen_docs.build_ablation_schema()["properties"]["ema-decay"]  # an ablation column
    assert column["pattern"] == gen_docs.CELL and "--ema-decay" in column["description"]
    assert ("| `finetune.ema_decay` | `0.0` | Decay of the weights' moving average. Flag: "
            "`--ema-decay`. |") in gen_docs.key_table()


def test_the_workflow_passes_a_finetune_key_as_its_flag(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_args import train_flags

    config = {"prepare": {"task": "regression", "categorical_columns": []}, "model": {},
              "finetune": {"ema_decay": 0.99, "count_prediction": False}}
    assert shlex.split(train_flags({}, config))[-3:] == ["--ema-decay", "0.99",
                                                         "--no-count-prediction"]


def test_resume_rules_come_from_the_fields():
    assert RUNTIME == {"train.device", "train.parallel", "train.stop_after_minutes"}
    assert {"train.lr", "train.epochs", "categorical_lr", "abundance_head_refit"} <= SCHEDULE
    assert not {"model.embedding_dim", "fusion.name", "task", "train.seed"} & SCHEDULE
    assert "ema_decay" in schedule_settings(_extended())  # a new schedule=True field joins


def test_a_shorthand_sets_its_fields_and_a_specific_flag_wins():
    from aam.cli.train import build_parser

    args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o",
                                      "--attention-layers", "3", "--asv-layers", "5"])
    cfg = build_training_config(FinetuneConfig, args, options_of(FinetuneConfig, "train"))
    assert (cfg.model.nucleotide_layers, cfg.model.asv_layers, cfg.model.sample_layers) == \
        (3, 5, 3)
    assert isinstance(FinetuneConfig().model.SHORTHANDS["attention_layers"], Shorthand)


def _other_value(s):
    """A valid value of setting ``s`` that differs from its default, and its flag text."""
    if s.parse is not None:
        return "log2", "log2"
    if s.type is bool:
        return (not s.default), None
    if s.choices:
        value = s.choices[-1] if s.choices[-1] != s.default else s.choices[0]
        return value, value
    if s.is_list:
        return ("a", "b"), "a,b"
    if s.type is int:
        value = 2 if s.default is None else s.default + 2
        return value, str(value)
    if s.type is float:
        value = s.default / 2 if s.default else 0.5
        return value, str(value)
    return "x", "x"


@pytest.mark.parametrize("command", sorted(PATHS))
def test_every_setting_of_every_command_is_its_flag(command):
    """Each setting of the command's configs, given alone as its flag, reaches the config."""
    module = importlib.import_module(COMMANDS[command][0])
    for cls, options in module.CONFIGS:
        for s, o in zip([s for s in settings_of(cls)], options):
            assert o.fields == s.fields
            if s.required:
                continue
            value, text = _other_value(s)
            flag = [o.flag if value else "--no-" + o.flag[2:]] if text is None else [o.flag,
                                                                                      text]
            args = module.build_parser().parse_args([*PATHS[command], *flag])
            cfg = build_config(cls, args, options)
            assert getattr(cfg, s.name) == value, (command, o.flag)


def test_an_old_config_key_is_unknown_not_renamed():
    from aam.config import TrainConfig, from_dict
    from aam.errors import InputError

    with pytest.raises(InputError, match=r"Unknown config key\(s\) in 'train': distributed"):
        from_dict(FinetuneConfig, {"train": {"distributed": "ddp"}})
    assert from_dict(TrainConfig, {"parallel": "ddp"}).parallel == "ddp"


def test_split_takes_folds_or_a_holdout_fraction_not_both(tmp_path, capsys):
    from aam.cli.split import main

    code = main(["--metadata", str(REPO / "tests" / "data" / "tiny-metadata.tsv"), "--output-dir",
                 str(tmp_path / "s"), "--folds", "3", "--val-fraction", "0.3"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("aam split: error: give --folds (K-fold) or "
                                               "--val-fraction (one holdout split), not both.")
    assert not (tmp_path / "s").exists()
