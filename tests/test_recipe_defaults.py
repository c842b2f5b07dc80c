"""One recipe: `aam train` by hand, the workflow and the benchmark resolve the same settings.

A user who gives `aam train` only the data, the target and `--group-by` gets the recipe the
benchmark measured (ASV sampling, target transform, token limit, grouping), and so does the
workflow's default config. Sizes and schedule (epochs, learning rate, widths) may differ by
preset (a laptop's workflow vs the benchmark's CPU preset); they are not compared here.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml

from aam.cli.options import FINETUNE_OPTIONS, build_training_config
from aam.cli.train import build_parser
from aam.config import FinetuneConfig

REPO = Path(__file__).resolve().parents[1]
#: The recipe's named fields: (dotted config field, the benchmark preset's attribute).
RECIPE = {"data.asv_sampling": "asv_sampling", "data.target_transform": "target_transform",
          "data.token_limit": "token_limit"}


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _train_config(flags: list[str]) -> FinetuneConfig:
    args = build_parser().parse_args(["--data-dir", "prepared", "--output-dir", "out", *flags])
    return build_training_config(FinetuneConfig, args, FINETUNE_OPTIONS, None)


def _workflow_config() -> dict:
    """config/config.yaml over the schema's defaults, as the Snakefile validates it."""
    from test_vocabulary import _with_defaults

    return _with_defaults(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


@pytest.fixture
def preset():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from aam_science.settings import Preset
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return Preset()


def test_train_by_hand_resolves_the_benchmarks_recipe(preset):
    cfg = _train_config(["--metadata-column", "age", "--group-by", "host_subject_id"])
    for field, attribute in RECIPE.items():
        assert _get(cfg, field) == getattr(preset, attribute), field
    assert cfg.group_by == "host_subject_id"


def test_the_workflows_default_config_resolves_the_same_recipe(preset, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_args import train_flags
    from workflow_checks import read_ablation_table

    config = _workflow_config()
    hand = _train_config(["--metadata-column", "target", "--group-by",
                          config["split"]["group_by"]])
    for row in read_ablation_table(REPO / config["ablations"]).to_dict("records"):
        workflow = _train_config(shlex.split(train_flags(row, config)))
        assert workflow.group_by == config["split"]["group_by"] != ""  # the split's subjects
        for field, attribute in RECIPE.items():
            assert _get(workflow, field) == _get(hand, field) == getattr(preset, attribute), \
                field
    assert config["pretrain"]["asv_sampling"] == preset.asv_sampling


def test_group_by_without_lists_splits_by_subject(simulated_prepared, caplog):
    from aam.data.prepared import load_prepared
    from aam.training.finetune import FinetunePaths, _split

    data = load_prepared(simulated_prepared)
    paths = FinetunePaths(simulated_prepared, Path("unused"))
    subject = data.metadata["subject"].astype(str)
    cfg = FinetuneConfig(group_by="subject", target_column="target")
    train, val = _split(cfg, data, paths)
    assert set(subject[train]).isdisjoint(subject[val]) and train and val
    assert sorted(train + val) == sorted(data.sample_ids)


def test_no_group_by_and_no_lists_warns_loudly(simulated_prepared, caplog):
    from aam.data.prepared import load_prepared
    from aam.training.finetune import FinetunePaths, _split

    data = load_prepared(simulated_prepared)
    with caplog.at_level("WARNING"):
        _split(FinetuneConfig(target_column="target"), data,
               FinetunePaths(simulated_prepared, Path("unused")))
    assert "NO SUBJECT GROUPING" in caplog.text and "--group-by" in caplog.text
