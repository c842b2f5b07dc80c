"""Config validation, the ablation grid, and the input/flag helpers every rule uses."""

import os
import shlex

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import Paramspace, validate

validate(config, "../schemas/config.schema.yaml")

# Ablation columns -> `aam train` flags. Names hold no `_` (the path segment joins key~value
# pairs with `_`); true/false cells become `--flag` / `--no-flag`.
ABLATION_FLAGS = {
    "fusion": "--categorical-fusion",
    "freeze": "--freeze-base",
    "sampling": "--asv-sampling",
    "transform": "--target-transform",
    "counts": "--count-prediction",
}


def _check_config(cfg):
    if cfg["input"]["table"] and not cfg["input"]["metadata"]:
        raise WorkflowError(
            f"input.metadata is empty but input.table is set ({cfg['input']['table']}); "
            "set input.metadata to the sample metadata TSV in the config."
        )
    if cfg["split"]["group_by"] and cfg["split"]["stratify_by"]:
        raise WorkflowError(
            f"split.group_by ({cfg['split']['group_by']}) and split.stratify_by "
            f"({cfg['split']['stratify_by']}) are both set; keep one of them in the config."
        )
    has_distances = (
        not cfg["input"]["table"]
        or cfg["input"]["tree"]
        or cfg["input"]["unifrac_matrix"]
    )
    if cfg["pretrain"]["enabled"] and not has_distances:
        raise WorkflowError(
            "UniFrac pretraining needs a phylogeny: input.tree (or input.unifrac_matrix) is not "
            "set in the config; set one, or set pretrain.enabled to false."
        )
    if cfg["split"]["folds"] == 1:
        raise WorkflowError(
            "split.folds is 1; use 0 for one holdout split or K >= 2 for K-fold cross-validation."
        )


def _read_ablations(path):
    if not os.path.exists(path):
        raise WorkflowError(
            f"ablation table not found: {path} (set `ablations` in the config)"
        )
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    table = table.apply(lambda column: column.str.strip())
    if table.empty:
        raise WorkflowError(
            f"{path} has no rows; add at least one, e.g. fusion=concat."
        )
    validate(table, "../schemas/ablations.schema.yaml")
    duplicated = table[table.duplicated()]
    if len(duplicated):
        raise WorkflowError(
            f"{len(duplicated)} duplicated rows in {path} (first: "
            f"{duplicated.iloc[0].to_dict()}); remove them, each row is trained once per seed."
        )
    if "pretrained" in table and not config["pretrain"]["enabled"]:
        rows = (table["pretrained"] == "true").sum()
        if rows:
            raise WorkflowError(
                f"{rows} rows of {path} set pretrained=true but pretrain.enabled is false; "
                "enable pretraining or set those rows to false."
            )
    return table


_check_config(config)
ABLATIONS = _read_ablations(config["ablations"])
PARAMSPACE = Paramspace(ABLATIONS, filename_params="*", single_wildcard="ablation")
FOLDS = list(range(config["split"]["folds"])) if config["split"]["folds"] >= 2 else [0]
SEEDS = config["seeds"]
SIMULATED = not config["input"]["table"]
AAM_ENV = "../envs/aam.yaml"  # software of every rule, with --use-conda


wildcard_constraints:
    ablation="[^/]+",
    fold=r"\d+",
    seed=r"\d+",


def cli_flags(options, skip=()):
    """`--key value` arguments (shell-quoted) for a config section; keys map to flag names."""
    args = []
    for key, value in options.items():
        if key in skip or key == "extra_args" or value in ("", None, []):
            continue
        flag = "--{}".format(key.replace("_", "-"))
        if isinstance(value, bool):
            args += [flag] if value else []
        elif isinstance(value, list):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    args += shlex.split(options.get("extra_args", ""))
    return shlex.join(args)


def input_files():
    """Raw inputs of `aam prepare`: the user's files, or the simulator's."""
    if SIMULATED:
        return {
            "table": "resources/sim/table.biom",
            "metadata": "resources/sim/metadata.tsv",
            "tree": "resources/sim/tree.nwk",
        }
    keys = ("table", "rep_seqs", "metadata", "tree", "unifrac_matrix")
    return {key: config["input"][key] for key in keys if config["input"][key]}


def optional_file_flags(input, **flags):
    """`--flag path` for each optional input the job has; `flags` maps flag names to input keys."""
    flags = flags or {key: key for key in ("rep_seqs", "tree", "unifrac_matrix")}
    present = set(input.keys())
    return cli_flags(
        {flag: input[key] for flag, key in flags.items() if key in present}
    )


def prepare_flags():
    opts = {"metadata_column": config["prepare"]["target"]}
    opts.update(
        {k: v for k, v in config["prepare"].items() if k != "target" and v != 0}
    )
    return cli_flags(opts)


def pretrain_flags():
    model = cli_flags(config["model"])
    return f"{model} {cli_flags(config['pretrain'], skip=('enabled',))}"


def split_flags():
    split = config["split"]
    opts = {"folds": split["folds"]} if split["folds"] >= 2 else {}
    opts["val_fraction"] = None if split["folds"] >= 2 else split["val_fraction"]
    keys = ("test_fraction", "group_by", "stratify_by", "seed")
    opts.update({key: split[key] for key in keys})
    return cli_flags(opts)


def ablation_row(wildcards):
    """The ablation table row of a job, as {column: string value}."""
    return {key: str(value) for key, value in PARAMSPACE.instance(wildcards).items()}


def uses_encoder(wildcards):
    default = "true" if config["pretrain"]["enabled"] else "false"
    return ablation_row(wildcards).get("pretrained", default) == "true"


def finetune_inputs(wildcards):
    split = f"results/splits/fold~{wildcards.fold}"
    inputs = {
        "info": "results/data/prepare.json",
        "train": f"{split}/train_samples.txt",
        "val": f"{split}/val_samples.txt",
    }
    if uses_encoder(wildcards):
        inputs["encoder"] = f"results/pretrain/seed~{wildcards.seed}/encoder.pt"
    return inputs


def train_flags(wildcards):
    """Every `aam train` option of one ablation job except paths, seed and fold."""
    prepare = config["prepare"]
    opts = {
        "task": prepare["task"],
        "categorical_columns": prepare["categorical_columns"],
    }
    opts.update(config["model"])
    opts.update(config["finetune"])
    args = []
    for column, value in ablation_row(wildcards).items():
        flag = ABLATION_FLAGS.get(column)
        if flag and value in ("true", "false"):
            args.append(flag if value == "true" else flag.replace("--", "--no-", 1))
        elif flag:
            opts[flag[2:].replace("-", "_")] = value
    return " ".join(filter(None, [cli_flags(opts), shlex.join(args)]))


def predict_flags(wildcards):
    opts = dict(config["predict"])
    opts["asv_sampling"] = ablation_row(wildcards).get("sampling", "")
    return cli_flags(opts)


def train_launcher(wildcards, resources):
    """`aam train`, or torchrun over every GPU of the job when it holds more than one."""
    gpus = int(resources.get("gpu", 0) or 0)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m aam.cli train"
    return "aam train"


def run_outputs(name):
    """`name` of every fine-tuned model and random forest: what the comparison reads."""
    finetune = expand(
        f"results/finetune/{{ablation}}/fold~{{fold}}/seed~{{seed}}/{name}",
        ablation=PARAMSPACE.instance_patterns,
        fold=FOLDS,
        seed=SEEDS,
    )
    rf = expand(
        f"results/rf/fold~{{fold}}/seed~{{seed}}/{name}", fold=FOLDS, seed=SEEDS
    )
    return finetune + rf


def compare_figures():
    """Names of the figures `aam compare` draws for the task (a metric figure each)."""
    if config["prepare"]["task"] == "regression":
        metrics = ["r2", "mae", "rmse"]
        return [f"metric_{m}" for m in metrics] + ["predicted_vs_actual", "residuals"]
    metrics = ["accuracy", "balanced_accuracy", "f1_macro"]
    return [f"metric_{m}" for m in metrics] + ["roc", "confusion_matrix"]


def verdict_label(wildcards, output):
    """The verdict of the best AAM model against the baseline (from summary.md), for the report."""
    with open(output.summary, encoding="utf-8") as fh:
        verdicts = [
            line[2:].strip().replace("**", "") for line in fh if line.startswith("- ")
        ]
    models = [line for line in verdicts if "(the baseline)" not in line]
    return {"file": "summary", "verdict": (models or verdicts or ["no verdict"])[0]}


def results_root(paths):
    """The folder above results/finetune and results/rf, which `aam compare` walks."""
    return os.path.commonpath(paths)


def final_outputs():
    """The final targets: the comparison table and summary (and so every run)."""
    return ["results/report/comparison.tsv", "results/report/summary.md"]
