"""The workflow validates the whole config before scheduling: every section and every
`extra_args` is parsed by the command that will receive it, unknown keys are named with a "did
you mean" (never a schema dump), and tree-free pretraining is planned."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_workflow import job_counts, override, snakemake

REPO = Path(__file__).resolve().parents[1]

TYPOS = {
    # section: (override YAML, words the one-line error must hold)
    "rf": ("rf:\n  n_estimator: 50\n", ["section 'rf'", "--n-estimator", "'--n-estimators'"]),
    "linear": ("linear:\n  cv_fold: 3\n", ["section 'linear'", "'--cv-folds'"]),
    "predict": ("predict:\n  extra_args: '--prediction-pases 2'\n",
                ["section 'predict'", "'--prediction-passes'"]),
    "compare": ("compare:\n  extra_args: '--n-bootstrapp 5'\n",
                ["section 'compare'", "'--n-bootstrap'"]),
    "explain": ("explain:\n  step: 8\n", ["'step' in section 'explain'", "'steps'"]),
    "simulate": ("simulate:\n  sample: 8\n", ["'sample' in section 'simulate'", "'samples'"]),
    "split": ("split:\n  foldz: 3\n", ["'foldz' in section 'split'", "'folds'"]),
    "prepare": ("prepare:\n  min_dept: 3\n", ["'min_dept' in section 'prepare'", "'min_depth'"]),
    "finetune": ("finetune:\n  extra_args: '--lr-x 3'\n", ["aam train", "--lr-x"]),
    "pretrain": ("pretrain:\n  extra_args: '--epoch 3'\n", ["aam pretrain", "--epoch"]),
    "top level": ("predikt:\n  x: 1\n", ["top-level config key 'predikt'", "'predict'"]),
    "a bad value": ("split:\n  folds: -2\n", ["split.folds is -2; use 0 for one holdout"]),
    "a wrong type": ("split:\n  stratify_by: 3\n",
                     ["config key split.stratify_by: 3 is not of type 'string', 'null'"]),
    "a value the command refuses": ("simulate:\n  samples: 4\n", [
        "section 'simulate' of the config gives `aam simulate` flags it refuses",
        "n_samples (--samples) must be >= 8, got 4"]),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_typo_in_any_section_fails_the_dry_run_naming_it(case, workflow_workdir):
    text, words = TYPOS[case]
    result = snakemake("-n", "--cores", 1, "--configfile",
                       override(workflow_workdir, "typo", text), workdir=workflow_workdir)
    assert result.returncode != 0
    for word in words:
        assert word in result.stdout, result.stdout
    assert len(result.stdout.splitlines()) < 40  # one line and its context, no schema dump
    assert not (workflow_workdir / "results").exists()


def test_tree_free_pretraining_is_planned(workflow_workdir):
    data = workflow_workdir / "data"
    data.mkdir()
    for name in ("tiny-table.biom", "tiny-metadata.tsv"):
        shutil.copy(REPO / "tests" / "data" / name, data / name)
    text = ("input:\n  table: data/tiny-table.biom\n  metadata: data/tiny-metadata.tsv\n"
            "prepare:\n  target: ph\n  categorical_columns: [body_site]\n"
            "  beta_metric: braycurtis\n"
            "split:\n  group_by: ''\n")
    result = snakemake("-n", "--cores", 1, "--configfile",
                       override(workflow_workdir, "tree-free", text), workdir=workflow_workdir)
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout)["pretrain"] >= 1
    assert "--beta-metric braycurtis" in snakemake(
        "-n", "-p", "--cores", 1, "--configfile", str(workflow_workdir / "tree-free.yaml"),
        workdir=workflow_workdir).stdout
    text = text.replace("  beta_metric: braycurtis\n", "")
    result = snakemake("-n", "--cores", 1, "--configfile",
                       override(workflow_workdir, "no-distances", text), workdir=workflow_workdir)
    assert result.returncode != 0 and "prepare.beta_metric" in result.stdout
