"""The `aam` command-line flags of each rule, built from config sections and ablation rows,
and the small path and label helpers of the report rule.

Imported by workflow/rules/common.smk. Nothing here reads Snakemake globals: each function takes
the config section (or ablation row) it needs, so a rule's params show what it depends on.
"""

import os
import shlex

# An ablation column is an `aam train` flag without its dashes (`categorical-fusion`,
# `freeze-base`, `lr`); names hold no `_` (the path segment joins key~value pairs with `_`), and
# true/false cells become `--flag` / `--no-flag`.
# Ablation columns that steer the workflow and are not `aam train` flags.
ABLATION_WORKFLOW_COLUMNS = ("pretrained",)
INPUT_KEYS = ("table", "rep_seqs", "metadata", "tree", "distance_matrix", "taxonomy")
OPTIONAL_INPUTS = ("rep_seqs", "tree", "distance_matrix", "taxonomy")
SIMULATED_INPUTS = {
    "table": "resources/sim/table.biom",
    "metadata": "resources/sim/metadata.tsv",
    "tree": "resources/sim/tree.nwk",
    "taxonomy": "resources/sim/taxonomy.tsv",  # its clades: signal vs background
}
SIMULATED_TRUTH = {"truth": "resources/sim/truth.json"}


# Config keys that steer the workflow and are not `aam` flags (extra_args is spliced in verbatim).
WORKFLOW_KEYS = ("enabled", "multi_gpu", "extra_args")


def cli_flags(options):
    """`--key value` arguments (shell-quoted) for a config section; keys map to flag names."""
    args = []
    for key, value in options.items():
        if key in WORKFLOW_KEYS or value in ("", None, []):
            continue
        flag = "--{}".format(key.replace("_", "-"))
        if isinstance(value, bool):
            args += [flag if value else "--no-" + flag[2:]]
        elif isinstance(value, list):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    args += shlex.split(options.get("extra_args", ""))
    return shlex.join(args)


def input_files(inputs):
    """Raw inputs of `aam prepare`: the files of config `input`, or the simulator's."""
    if not inputs["table"]:
        return dict(SIMULATED_INPUTS)
    return {key: inputs[key] for key in INPUT_KEYS if inputs[key]}


def input_flags(config):
    """`--tree PATH` (and the other optional inputs) that `aam prepare` will get, for checks
    made before any job runs."""
    files = input_files(config["input"])
    return cli_flags({key: files[key] for key in OPTIONAL_INPUTS if key in files})


def optional_file_flags(input, **flags):
    """`--flag path` for each optional input the job has; `flags` maps flag names to input keys."""
    flags = flags or {key: key for key in OPTIONAL_INPUTS}
    present = set(input.keys())
    return cli_flags(
        {flag: input[key] for flag, key in flags.items() if key in present}
    )


def target_column(prepare):
    """The column to predict: `metadata_column` (the flag's name), else its published alias
    `target`."""
    return prepare.get("metadata_column") or prepare["target"]


def prepare_flags(prepare):
    """`aam prepare` options: the target column (`metadata_column`, else `target`) and every
    other key (false becomes `--no-flag`; null and "" are left out)."""
    opts = {"metadata_column": target_column(prepare)}
    opts.update({k: v for k, v in prepare.items() if k not in ("target", "metadata_column")})
    return cli_flags(opts)


def pretrain_flags(model, pretrain):
    return f"{cli_flags(model)} {cli_flags(pretrain)}"


def split_flags(split):
    kfold = split["folds"] >= 2
    opts = {"folds": split["folds"]} if kfold else {"val_fraction": split["val_fraction"]}
    keys = ("test_fraction", "group_by", "stratify_by", "seed")
    opts.update({key: split[key] for key in keys})
    if split["test_fraction"] == 0:  # no separate test set: validate on training groups
        opts["inner_val_fraction"] = split.get("inner_val_fraction", 0)
    return cli_flags(opts)


def ablation_folders(table):
    """The folder name of each ablation row, in table order: `column~value` pairs joined by `_`
    (`categorical-fusion~gmu_freeze-base~true`). Snakemake's Paramspace builds the same names
    but cannot take column names with `-`, which every multi-word flag has."""
    return ["_".join(f"{column}~{value}" for column, value in row.items())
            for row in table.to_dict("records")]


def ablation_settings(folder):
    """The ablation row of a folder name, as {column: string value} (the inverse of
    `ablation_folders`: names and values hold no `_`, names no `~`)."""
    return dict(pair.split("~", 1) for pair in folder.split("_"))


def ablation_column_key(column):
    """The `aam train` setting (config-key spelling) of an ablation column (its flag)."""
    return column.replace("-", "_")


def train_flags(row, config):
    """Every `aam train` option of one ablation row except paths, seed and fold."""
    prepare = config["prepare"]
    split = config.get("split", {})
    opts = {
        "task": prepare["task"],
        "categorical_columns": prepare["categorical_columns"],
        # the split's subjects: the abundance head's fit cross-validates by them
        "group_by": split.get("group_by") or "",
    }
    if split and split.get("test_fraction") == 0 and not split.get("inner_val_fraction"):
        # validation is the test side: the head's refit on training + validation samples
        # would fit the scored samples
        opts["abundance_head_refit"] = False
    opts.update(config["model"])
    opts.update(config["finetune"])
    for column, value in row.items():
        if column in ABLATION_WORKFLOW_COLUMNS or value == "":
            continue
        opts[ablation_column_key(column)] = {"true": True, "false": False}.get(value, value)
    return cli_flags(opts)


def predict_flags(row, predict, permutation_check=False):
    """`aam predict` options: the config's, with the row's ASV sampling (and the metadata
    permutation check when the models have categorical columns)."""
    sampling = next((v for k, v in row.items() if ablation_column_key(k) == "asv_sampling"), "")
    check = {"permutation_check": True} if permutation_check else {}
    return cli_flags({**predict, "asv_sampling": sampling, **check})


def baseline_trains_on_val(config):
    """True when the baselines train on the training + validation samples: AAM's fitted head is
    refitted on them (abundance_head_refit, on by default) unless validation is the test side.
    A baseline has no epoch to select, so it has no use for held-back validation samples."""
    split = config.get("split", {})
    if split.get("test_fraction") == 0 and not split.get("inner_val_fraction"):
        return False  # validation is the test side
    return config.get("finetune", {}).get("abundance_head_refit", True) is not False


def baseline_train_lists(input, config):
    """The `--train-samples` files of a baseline job: train, plus val when AAM sees it."""
    lists = [input.train] + ([input.val] if baseline_trains_on_val(config) else [])
    return shlex.join(lists)


def baseline_flags(config, section):
    """`aam rf-baseline` / `aam linear-baseline` options: task, the categorical columns AAM
    fuses (one-hot), the split's subjects (linear: its penalty's CV) and the config section."""
    prepare = config["prepare"]
    opts = {"task": prepare["task"], "categorical_columns": prepare["categorical_columns"]}
    if section == "linear":
        opts["group_by"] = config.get("split", {}).get("group_by") or ""
    return cli_flags({**opts, **config.get(section, {})})


def launcher(command, multi_gpu="ddp"):
    """A params function: `aam <command>`, or torchrun over every GPU of the job when it holds
    more than one (one process per GPU; `multi_gpu` is the `--parallel` strategy: ddp or fsdp).
    A job with a `runtime` (minutes; cluster profiles) stops itself before it: see stop_flag."""

    def launch(wildcards, resources):
        gpus = int(resources.get("gpu", 0) or 0)
        stop = stop_flag(resources.get("runtime"))
        if gpus > 1:
            return (f"torchrun --standalone --nproc_per_node={gpus} -m aam.cli {command} "
                    f"--parallel {multi_gpu}{stop}")
        return f"aam {command}{stop}"

    return launch


def stop_flag(runtime_minutes):
    """` --stop-after-minutes M` that ends training cleanly before a job's time limit (a
    resumable checkpoint and exit 75; the retried job continues from it): 10% of the runtime,
    at least 5 and at most 30 minutes, are left for writing it. Empty without a runtime."""
    try:
        runtime = float(runtime_minutes or 0)
    except (TypeError, ValueError):
        return ""
    if runtime <= 0:
        return ""
    margin = min(max(0.1 * runtime, 5.0), 30.0)
    return f" --stop-after-minutes {max(runtime - margin, 1.0):g}"


def verdict_label(wildcards, output):
    """The verdict of the best AAM model against the baseline (from summary.md), for the report."""
    with open(output.summary, encoding="utf-8") as fh:
        verdicts = [
            line[2:].strip().replace("**", "") for line in fh if line.startswith("- ")
        ]
    models = [line for line in verdicts
              if "(the baseline)" not in line and "(a baseline)" not in line]
    return {"file": "summary", "verdict": (models or verdicts or ["no verdict"])[0]}


def results_root(paths):
    """The folder above results/finetune and results/rf, under which runs are named."""
    return os.path.commonpath(paths)
