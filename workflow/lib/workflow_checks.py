"""Checks of the workflow config and the ablation table that the JSON schemas cannot express.

Imported by workflow/rules/common.smk, which runs the schema validation between these steps.
"""

import os
import shlex
import shutil
import subprocess

import pandas as pd
from snakemake.exceptions import WorkflowError


def tree_free_metrics():
    """The metrics `aam prepare --beta-metric` computes without a tree: the registry decides
    (``BETA_METRICS[m].needs_tree``)."""
    from aam.data.beta import TREE_FREE

    return TREE_FREE


#: The path arguments each rule passes itself (so a section's flags can be parsed alone).
REQUIRED = {
    "simulate": ["--output-dir", "o"],
    "prepare": ["--table", "t", "--metadata", "m", "--output-dir", "o"],
    "split": ["--metadata", "m", "--output-dir", "o"],
    "predict": ["--model", "m", "--data-dir", "d", "--output", "o"],
    "rf-baseline": ["--data-dir", "d", "--metadata-column", "c", "--train-samples", "t",
                    "--test-samples", "v", "--output", "o"],
    "linear-baseline": ["--data-dir", "d", "--metadata-column", "c", "--train-samples", "t",
                        "--test-samples", "v", "--output", "o"],
    "explain": ["--model", "m", "--data-dir", "d", "--output-dir", "o"],
    "compare": ["--results-dir", "r", "--output-dir", "o"],
}


def did_you_mean(word, choices):
    """' (did you mean X?)' for the closest of ``choices``, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(cfg, schema):
    """Unknown keys, at the top level and in the sections whose keys the schema lists, named
    with the section and the closest known key, in one line (the schema is not printed)."""
    known = schema["properties"]
    for key in cfg:
        if key not in known:
            raise WorkflowError(
                f"unknown top-level config key {key!r}{did_you_mean(key, known)}; the keys are "
                "listed in config/README.md.")
    for section, spec in known.items():
        value = cfg.get(section)
        if not isinstance(value, dict) or spec.get("additionalProperties", True) is not False:
            continue
        for key in value:
            if key not in spec.get("properties", {}):
                raise WorkflowError(
                    f"unknown config key {key!r} in section {section!r}"
                    f"{did_you_mean(key, spec.get('properties', {}))}; the keys of {section} "
                    "are listed in config/README.md.")


def check_schema(cfg, schema):
    """The first schema violation as one line naming the key (Snakemake's own message prints
    the whole schema); defaults are filled in afterwards by `snakemake.utils.validate`."""
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(cfg),
                    key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "the config"
        message = error.message if len(error.message) < 200 else error.message[:200] + "..."
        raise WorkflowError(f"config key {where}: {message}. See config/README.md.")


def check_config(cfg):
    """Raise WorkflowError for settings that contradict each other."""
    if cfg["input"]["table"] and not cfg["input"]["metadata"]:
        raise WorkflowError(
            f"input.metadata is empty but input.table is set ({cfg['input']['table']}); "
            "set input.metadata to the sample metadata TSV in the config."
        )
    has_distances = (
        not cfg["input"]["table"]
        or cfg["input"]["tree"]
        or cfg["input"]["distance_matrix"]
        or cfg["prepare"].get("beta_metric") in tree_free_metrics()
    )
    if cfg["pretrain"]["enabled"] and not has_distances:
        raise WorkflowError(
            "pretraining needs sample distances: set input.tree (UniFrac), input.distance_matrix "
            f"(a precomputed matrix) or prepare.beta_metric to one of "
            f"{', '.join(tree_free_metrics())} (no tree needed), or set pretrain.enabled to false."
        )
    folds = cfg["split"]["folds"]
    if folds is None or folds == 1 or folds < 0:
        raise WorkflowError(
            f"split.folds is {folds}; use 0 for one holdout split or K >= 2 for K-fold "
            "cross-validation."
        )


def read_ablation_table(path):
    """The ablation table as strings (cells stripped, `#` lines skipped); at least one row."""
    if not os.path.exists(path):
        raise WorkflowError(
            f"ablation table not found: {path} (set `ablations` in the config)"
        )
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    table = table.apply(lambda column: column.str.strip())
    if table.empty:
        raise WorkflowError(
            f"{path} has no rows; add at least one, e.g. categorical-fusion concat."
        )
    return table


#: Short column names the ablation table once used -> the `aam train` flag that replaced them.
OLD_COLUMNS = {"fusion": "categorical-fusion", "freeze": "freeze-base", "sampling": "asv-sampling",
               "transform": "target-transform", "counts": "count-prediction"}


def check_ablation_columns(table, path):
    """Raise WorkflowError naming the new column for a short name the table no longer takes."""
    for column in table.columns:
        if column in OLD_COLUMNS:
            raise WorkflowError(
                f"{path}: the column {column!r} is now {OLD_COLUMNS[column]!r} (ablation columns "
                "are `aam train` flags without their dashes); rename it in the header. Result "
                "folders are named after the columns, so the renamed rows train again.")


def check_ablation_rows(table, path, pretrain_enabled):
    """Raise WorkflowError for duplicated rows, or pretrained rows without pretraining."""
    duplicated = table[table.duplicated()]
    if len(duplicated):
        raise WorkflowError(
            f"{len(duplicated)} duplicated rows in {path} (first: "
            f"{duplicated.iloc[0].to_dict()}); remove them, each row is trained once per seed."
        )
    if "pretrained" in table and not pretrain_enabled:
        rows = (table["pretrained"] == "true").sum()
        if rows:
            raise WorkflowError(
                f"{rows} rows of {path} set pretrained=true but pretrain.enabled is false; "
                "enable pretraining or set those rows to false."
            )


# `aam train` settings (config-key spelling) that only act on categorical metadata.
FUSION_SETTINGS = ("categorical_fusion", "category_dim", "cross_attn_heads",
                   "perceiver_num_latents", "perceiver_num_layers", "conditional_output_scaling",
                   "categorical_lr")


def check_fusion_rows(table, path, categorical_columns):
    """Raise WorkflowError when the table compares fusions (several fusion values, or a
    fusion-specific column) but no categorical column is fused: every such row would be the
    same sequence-only model, and the report would rank noise."""
    from workflow_args import ablation_column_key

    keys = {column: ablation_column_key(column) for column in table.columns}
    if categorical_columns or "categorical_columns" in keys.values():
        return
    fusions = sorted({v for c, k in keys.items() if k == "categorical_fusion"
                      for v in table[c] if v})
    specific = [c for c, k in keys.items() if k in FUSION_SETTINGS[1:] and (table[c] != "").any()]
    if len(fusions) > 1 or specific:
        what = (f"compares {len(fusions)} fusions ({', '.join(fusions)})" if len(fusions) > 1
                else f"sets the fusion-specific column(s) {', '.join(specific)}")
        raise WorkflowError(
            f"{path} {what} but prepare.categorical_columns is empty, so no metadata is fused "
            "and those rows are the same model; set prepare.categorical_columns or drop the "
            "fusion rows."
        )


def split_labels(table):
    """(settings table without the optional `label` column, {row index: label}); the label is
    a display name only, so it is no part of the folder name."""
    if "label" not in table:
        return table, {}
    labels = {i: label for i, label in table["label"].items() if label}
    twice = table["label"][table["label"].duplicated() & (table["label"] != "")]
    if len(twice):
        raise WorkflowError(
            f"the label {twice.iloc[0]!r} names two rows of the ablation table; make labels unique."
        )
    return table.drop(columns="label"), labels


FIND_PACKAGES = (
    "import importlib.util as u, sys; "
    "sys.exit(0 if u.find_spec('aam') and u.find_spec('torch') else 3)"
)


def check_software(uses_conda, path=None):
    """Stop before scheduling when the rules' `aam` cannot run: not on PATH, or its Python lacks
    aam or torch. Skipped under --use-conda, where each rule gets its own environment (the
    post-deploy script installs aam there)."""
    if uses_conda:
        return
    found = shutil.which("aam", path=path)
    if found is None:
        raise WorkflowError(
            "the `aam` command is not on PATH: activate the environment that has it "
            "(`conda activate aam` from environment.yml, or `. .venv/bin/activate`) or pass "
            "--software-deployment-method conda."
        )
    with open(found, "rb") as handle:
        first = handle.readline().decode("utf-8", "replace").strip()
    python = first[2:].strip() if first.startswith("#!") else "python3"
    try:
        ok = subprocess.run(python.split() + ["-c", FIND_PACKAGES], capture_output=True,
                            timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise WorkflowError(
            f"`aam` ({found}) runs in a Python without the aam package or torch ({python}): "
            "activate the environment made by environment.yml, or `pip install -e . "
            "torch==2.13.0` into this one, or pass --software-deployment-method conda."
        )


def check_aam_flags(cfg, table):
    """Parse the `model`/`pretrain` keys with `aam pretrain`'s parser and every ablation row (with
    `model`/`finetune`) with `aam train`'s, so a misspelt key or column stops the workflow at once.

    Config keys and ablation columns are flag names (`_` or `-` for the flag's `-`). Skipped
    when this Python cannot import aam (each rule's own environment then reports a bad flag).
    """
    try:
        from aam.cli.options import FINETUNE_OPTIONS, PRETRAIN_OPTIONS, build_training_config
        from aam.cli.pretrain import build_parser as pretrain_parser
        from aam.cli.train import build_parser as train_parser
        from aam.config import FinetuneConfig, PretrainConfig
        from aam.errors import InputError
    except ImportError:
        return
    from workflow_args import pretrain_flags, train_flags

    jobs = [("the model and pretrain sections", "pretrain", pretrain_parser(),
             pretrain_flags(cfg["model"], cfg["pretrain"]), PretrainConfig, PRETRAIN_OPTIONS)]
    for i, row in enumerate(table.to_dict("records")):
        jobs.append((f"ablation row {i + 1} {row} with the model and finetune sections", "train",
                     train_parser(), train_flags(row, cfg), FinetuneConfig, FINETUNE_OPTIONS))
    for where, command, parser, flags, cls, options in jobs:
        what = f"{where} of the config give `aam {command}` flags it refuses"
        args = parse_or_fail(parser, ["--data-dir", "d", "--output-dir", "o",
                                      *shlex.split(flags)], what)
        try:  # the values too: choices such as the fusion name, numeric ranges
            build_training_config(cls, args, options)
        except InputError as err:
            raise WorkflowError(f"{what}: {err}") from None


def check_section_flags(cfg, table):
    """Parse every other section (with its `extra_args`) with the parser of the command that
    will receive it, before any job runs: a typo or a bad value in `rf`, `predict`, `compare`,
    ... fails the dry-run naming the section, not hours later when that job runs."""
    try:
        from aam.cli.__main__ import COMMANDS
    except ImportError:
        return
    import importlib

    from workflow_args import (baseline_flags, cli_flags, input_flags, predict_flags, prepare_flags,
                               split_flags)

    rows = table.to_dict("records") or [{}]
    jobs = [("simulate", "simulate", cli_flags(cfg["simulate"])),
            ("prepare", "prepare", f"{prepare_flags(cfg['prepare'])} {input_flags(cfg)}"),
            ("split", "split", split_flags(cfg["split"])),
            ("rf", "rf-baseline", baseline_flags(cfg, "rf")),
            ("explain", "explain", cli_flags(cfg["explain"])),
            ("compare", "compare", cli_flags(cfg["compare"]))]
    if cfg.get("linear", {}).get("enabled", True):
        jobs.append(("linear", "linear-baseline", baseline_flags(cfg, "linear")))
    jobs += [("predict", "predict", predict_flags(row, cfg["predict"])) for row in rows[:1]]
    from aam.cli.options import build_config
    from aam.errors import InputError

    for section, command, flags in jobs:
        if command not in COMMANDS:
            continue
        module = importlib.import_module(COMMANDS[command][0])
        what = f"section {section!r} of the config gives `aam {command}` flags it refuses"
        args = parse_or_fail(module.build_parser(), [*REQUIRED[command], *shlex.split(flags)],
                             what)
        try:  # the values too: each command's config checks its ranges and choices
            for cls, options in module.CONFIGS:
                build_config(cls, args, options)
        except InputError as err:
            raise WorkflowError(f"{what}: {err}") from None


def parse_or_fail(parser, argv, what):
    """``parser.parse_args(argv)``; an argparse error becomes one WorkflowError line (with the
    closest flag for an unknown one)."""

    def fail(message):
        hint = ""
        unknown = message.split("unrecognized arguments:")[-1].split() \
            if "unrecognized arguments:" in message else []
        if unknown:
            flags = [o for a in parser._actions for o in a.option_strings]
            hint = did_you_mean(unknown[0], flags)
        raise WorkflowError(f"{what}: {message}{hint}. Config keys and ablation columns are "
                            f"`{parser.prog}` flags (see `{parser.prog} --help`).")

    parser.error = fail
    parser.allow_abbrev = False  # a key names its flag exactly
    return parser.parse_args(argv)
