"""Config validation, the ablation grid, and the input helpers every rule uses.

Helpers that need no Snakemake globals (config checks, flag building) are plain Python in
workflow/lib/, which rules call with the config section they depend on.
"""

import os
import shlex
import sys

import yaml

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "lib"))

from workflow_args import (
    SIMULATED_TRUTH,
    ablation_folders,
    ablation_settings,
    baseline_flags,
    baseline_train_lists,
    cli_flags,
    input_files,
    optional_file_flags,
    predict_flags,
    prepare_flags,
    pretrain_flags,
    results_root,
    split_flags,
    target_column,
    train_flags,
    launcher,
    verdict_label,
)
from workflow_checks import (
    check_aam_flags,
    check_keys,
    check_schema,
    check_section_flags,
    check_ablation_columns,
    check_ablation_rows,
    check_config,
    check_fusion_rows,
    check_software,
    read_ablation_table,
    split_labels,
)

CONFIG_SCHEMA = yaml.safe_load(
    open(
        os.path.join(workflow.basedir, "schemas", "config.schema.yaml"),
        encoding="utf-8",
    )
)
check_keys(config, CONFIG_SCHEMA)  # one line naming the key, never the whole schema
check_schema(config, CONFIG_SCHEMA)
validate(config, "../schemas/config.schema.yaml")  # fills in the defaults
# one name for the target column from here on (metadata_column is the flag's name)
config["prepare"]["target"] = target_column(config["prepare"])
check_config(config)
ABLATIONS = read_ablation_table(config["ablations"])
check_ablation_columns(ABLATIONS, config["ablations"])
validate(ABLATIONS, "../schemas/ablations.schema.yaml")
ABLATIONS, LABELS = split_labels(ABLATIONS)
check_ablation_rows(ABLATIONS, config["ablations"], config["pretrain"]["enabled"])
check_fusion_rows(
    ABLATIONS, config["ablations"], config["prepare"]["categorical_columns"]
)
check_aam_flags(config, ABLATIONS)
check_section_flags(config, ABLATIONS)
ABLATION_FOLDERS = ablation_folders(ABLATIONS)  # one results/finetune/<folder> per row
FOLDS = list(range(config["split"]["folds"])) if config["split"]["folds"] >= 2 else [0]
SEEDS = config["seeds"]
# the models fuse metadata: predict checks how much shuffling it moves them (permutation.json)
PERMUTATION_CHECK = bool(config["prepare"]["categorical_columns"])
BASELINES = ["rf"] + (["linear"] if config["linear"]["enabled"] else [])
AAM_ENV = "../envs/aam.yaml"  # software of every rule, with --use-conda
# The post-deploy script of AAM_ENV installs aam from this repository (the folder above workflow/).
os.environ.setdefault("AAM_SOURCE", os.path.dirname(workflow.basedir))
check_software(DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method)


wildcard_constraints:
    ablation="[^/]+",
    fold=r"\d+",
    seed=r"\d+",


def ablation_row(wildcards):
    """The ablation table row of a job, as {column: string value}."""
    return ablation_settings(wildcards.ablation)


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
        inputs["encoder"] = (
            f"results/pretrain/fold~{wildcards.fold}/seed~{wildcards.seed}/encoder.pt"
        )
    return inputs


def finetune_outputs(name):
    """`name` of every fine-tuned model."""
    return expand(
        f"results/finetune/{{ablation}}/fold~{{fold}}/seed~{{seed}}/{name}",
        ablation=ABLATION_FOLDERS,
        fold=FOLDS,
        seed=SEEDS,
    )


def run_outputs(name):
    """`name` of every fine-tuned model and baseline (forest, linear): what the comparison
    reads."""
    baselines = expand(
        f"results/{{baseline}}/fold~{{fold}}/seed~{{seed}}/{name}",
        baseline=BASELINES,
        fold=FOLDS,
        seed=SEEDS,
    )
    return finetune_outputs(name) + baselines


def permutation_outputs():
    """permutation.json of every fine-tuned model (none without categorical columns)."""
    return finetune_outputs("permutation.json") if PERMUTATION_CHECK else []


def explain_outputs():
    """explain.json of every fine-tuned model (none when explain.enabled is false)."""
    if not config["explain"]["enabled"]:
        return []
    return expand(
        "results/finetune/{ablation}/fold~{fold}/seed~{seed}/explain/explain.json",
        ablation=ABLATION_FOLDERS,
        fold=FOLDS,
        seed=SEEDS,
    )


def label_lines():
    """Shell-quoted lines of labels.tsv: a header and `model<TAB>label` for each row with a
    `label` (aam compare derives the others from the row's settings)."""
    patterns = ABLATION_FOLDERS
    rows = [f"{patterns[i]}\t{label}" for i, label in LABELS.items()]
    return shlex.join(["model\tlabel"] + rows)


def final_outputs():
    """The final targets: the comparison table and summary (and so every run)."""
    return ["results/report/comparison.tsv", "results/report/summary.md"]
