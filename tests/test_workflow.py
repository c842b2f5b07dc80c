"""The Snakemake workflow: lint, formatting, dry-runs under each profile, the sbatch line of a
GPU job, which jobs rerun after a config change, and one real end-to-end run (slow)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEFILE = REPO / "workflow" / "Snakefile"

# Stands in for the `aam` executable in the rerun tests: it writes each command's output
# files (per the design's file contracts) so Snakemake records a finished run in seconds.
FAKE_AAM = textwrap.dedent(
    """\
    #!{python}
    import sys
    from pathlib import Path

    command, args = sys.argv[1], sys.argv[2:]
    value = lambda flag, default=None: args[args.index(flag) + 1] if flag in args else default
    FILES = {{
        "simulate": ["table.biom", "metadata.tsv", "tree.nwk", "taxonomy.tsv", "truth.json"],
        "prepare": ["table.biom", "metadata.tsv", "distances.h5", "prepare.json"],
        "pretrain": ["encoder.pt", "metrics.json"],
        "train": ["model.pt", "train_samples.txt", "val_samples.txt", "val_predictions.tsv",
                  "metrics.json"],
        "explain": ["attributions.tsv", "explain.json", "attributions.svg"],
        "compare": ["comparison.tsv", "summary.md"],
    }}
    if command == "split":
        names = [f"fold~{{k}}/{{side}}_samples.txt" for k in range(int(value("--folds", 1)))
                 for side in ("train", "val", "test")]
    elif command in ("predict", "rf-baseline", "linear-baseline"):
        out = Path(value("--output"))
        names = [out.name] + (["metrics.json", "feature_importance.tsv"]
                              if command.endswith("baseline") else [])
        names += ["permutation.json"] if "--permutation-check" in args else []
    else:
        names = FILES[command]
    folder = (out.parent if command in ("predict", "rf-baseline", "linear-baseline")
              else Path(value("--output-dir")))
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\\n")
    if command == "compare":  # only the figures that have data, e.g. no metric_auc
        Path(value("--figures-dir")).mkdir(parents=True, exist_ok=True)
        (Path(value("--figures-dir")) / "metric_r2.svg").write_text("x\\n")
    """
)


def snakemake(*args, workdir: Path, path_prefix: Path | None = None):
    """Run the venv's snakemake on our Snakefile in ``workdir``; its log is in ``.stdout``."""
    env = dict(os.environ)
    prefix = os.pathsep.join(str(p) for p in (path_prefix, BIN) if p)
    env["PATH"] = prefix + os.pathsep + env["PATH"]
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE), "-d", str(workdir), *map(str, args)]
    return subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


def override(workdir: Path, name: str, text: str) -> str:
    """Write a YAML config override (merged over config/config.yaml) and return its path."""
    path = workdir / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def job_counts(output: str) -> dict[str, int]:
    """{rule: count} from the 'Job stats' table of a dry-run."""
    stats = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


def job_blocks(output: str, rule: str) -> list[str]:
    """The dry-run text of every job of ``rule`` (header through shell command)."""
    return [block for block in re.split(r"\n(?=\[.*\]\nrule )", output)
            if re.search(rf"^rule {rule}:", block, re.MULTILINE)]


def resources_of(block: str) -> dict[str, object]:
    line = re.search(r"^\s*resources: (.*)$", block, re.MULTILINE)[1]
    pairs = (item.split("=", 1) for item in line.split(", "))
    return {key: int(val) if val.isdigit() else val for key, val in pairs}


@pytest.fixture
def workdir(workflow_workdir: Path) -> Path:
    """A working directory holding the default config and the test config, as in the repo."""
    return workflow_workdir


def test_lint_is_clean():
    result = snakemake("--lint", workdir=REPO)
    assert result.returncode == 0, result.stdout
    assert "Congratulations, your workflow is in a good condition" in result.stdout


def test_snakefmt_leaves_workflow_unchanged():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", str(REPO / "workflow")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_flag_helpers_map_config_and_ablation_cells_to_aam_flags(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "lib"))
    from workflow_args import cli_flags, split_flags, train_flags

    assert cli_flags({"n_bootstrap": 50, "png": False, "cols": ["a", "b"], "tag": "",
                      "extra_args": "--note 'two words'"}) == \
        "--n-bootstrap 50 --no-png --cols a,b --note 'two words'"
    split = {"folds": 0, "val_fraction": 0.2, "test_fraction": 0.1, "group_by": "",
             "stratify_by": "", "seed": 3}
    assert split_flags(split) == "--val-fraction 0.2 --test-fraction 0.1 --seed 3"
    assert split_flags({**split, "folds": 5}) == "--folds 5 --test-fraction 0.1 --seed 3"
    assert split_flags({**split, "folds": 5, "test_fraction": 0, "inner_val_fraction": 0.2}) == \
        "--folds 5 --test-fraction 0 --seed 3 --inner-val-fraction 0.2"
    config = {"prepare": {"task": "regression", "categorical_columns": []},
              "model": {"embedding_dim": 16}, "finetune": {"target_transform": "zscore"}}
    row = {"categorical-fusion": "gmu", "freeze-base": "false", "target-transform": "none",
           "pretrained": "true"}
    assert train_flags(row, config) == ("--task regression --embedding-dim 16 --target-transform "
                                        "none --categorical-fusion gmu --no-freeze-base")
    # validation on the test side (test_fraction 0, no inner split): the abundance head must
    # not be refitted on validation samples, which are the scored ones
    same = {**config, "split": {**split, "folds": 5, "test_fraction": 0, "group_by": "subject"}}
    assert train_flags(row, same).startswith("--task regression --group-by subject "
                                             "--no-abundance-head-refit --embedding-dim 16")
    inner = {**config, "split": {**same["split"], "inner_val_fraction": 0.2}}
    assert "refit" not in train_flags(row, inner)


def test_default_config_plans_the_whole_pipeline_locally(workdir):
    result = snakemake("--profile", REPO / "profiles" / "local", "-n", "-p", workdir=workdir)
    assert result.returncode == 0, result.stdout
    block = job_blocks(result.stdout, "finetune")[0]
    assert resources_of(block)["gpu"] == 1
    assert re.search(r"^Shell command: aam train --data-dir", block, re.MULTILINE)
    assert job_counts(result.stdout) == {
        "simulate": 1, "prepare": 1, "make_splits": 1, "pretrain": 1, "rf_baseline": 1,
        "linear_baseline": 1, "finetune": 2, "predict": 2, "explain": 2, "compare_models": 1,
        "all": 1,
    }
    # the baselines train on train + val (what AAM's refitted head sees) and get the metadata
    for rule in ("rf_baseline", "linear_baseline"):
        block = job_blocks(result.stdout, rule)[0]
        assert ("--train-samples 'results/splits/fold~0/train_samples.txt' "
                "'results/splits/fold~0/val_samples.txt' --test-samples "
                "results/splits/fold~0/test_samples.txt") in block
        assert "--categorical-columns category" in block
    assert "--group-by subject" in job_blocks(result.stdout, "linear_baseline")[0]
    assert all("--permutation-check" in b for b in job_blocks(result.stdout, "predict"))
    compare = job_blocks(result.stdout, "compare_models")[0]
    assert "results/linear/fold~0/seed~0/predictions.tsv" in compare
    assert "permutation.json" in compare


def test_test_config_trains_one_row_from_scratch(workdir):
    result = snakemake("-n", "-p", "--configfile", "tests/data/config.yaml", workdir=workdir)
    assert result.returncode == 0, result.stdout
    blocks = {re.search(r"ablation=(\S+),", b)[1]: b for b in job_blocks(result.stdout, "finetune")}
    assert set(blocks) == {"categorical-fusion~concat_freeze-base~false_pretrained~false",
                           "categorical-fusion~cross-attention_freeze-base~true_pretrained~true"}
    scratch = blocks["categorical-fusion~concat_freeze-base~false_pretrained~false"]
    frozen = blocks["categorical-fusion~cross-attention_freeze-base~true_pretrained~true"]
    assert "--pretrained-encoder" not in scratch and "--no-freeze-base" in scratch
    assert "--pretrained-encoder 'results/pretrain/fold~0/seed~0/encoder.pt'" in frozen
    assert "--freeze-base" in frozen and "--categorical-fusion cross-attention" in frozen


def test_pretraining_switched_off_drops_the_encoder(workdir):
    off = override(workdir, "no-pretrain", "pretrain: {enabled: false}")
    result = snakemake("-n", "-p", "--configfile", off, workdir=workdir)
    assert result.returncode == 0, result.stdout
    assert "pretrain" not in job_counts(result.stdout)
    assert all("--pretrained-encoder" not in b for b in job_blocks(result.stdout, "finetune"))


def test_label_column_names_rows_in_the_report_but_not_the_folders(workdir, tmp_path):
    table = tmp_path / "ablations.tsv"
    table.write_text("categorical-fusion\tfreeze-base\tlabel\nconcat\tfalse\tbaseline concat\n"
                     "gmu\ttrue\t\n")
    result = snakemake("-n", "-p", "--config", f"ablations={table}", workdir=workdir)
    assert result.returncode == 0, result.stdout
    finetune = " ".join(job_blocks(result.stdout, "finetune"))
    assert "categorical-fusion~concat_freeze-base~false/" in finetune and "label" not in finetune
    compare = job_blocks(result.stdout, "compare_models")[0]
    assert "'categorical-fusion~concat_freeze-base~false\tbaseline concat'" in compare
    # unlabelled: aam compare derives it
    assert "categorical-fusion~gmu_freeze-base~true\t" not in compare
    assert "--labels results/report/labels.tsv" in compare


@pytest.mark.parametrize("table", ["categorical-fusion\tfreeze-base\nconcat\tfalse\ngmu\tfalse\n",
                                   "categorical-fusion\tcross-attn-heads\ncross-attention\t2\n"])
def test_fusion_rows_without_categorical_columns_stop_before_any_job(workdir, tmp_path, table):
    (tmp_path / "ablations.tsv").write_text(table)
    none = override(workdir, "no-categories", "prepare: {categorical_columns: []}")
    result = snakemake("-n", "--configfile", none, "--config",
                       f"ablations={tmp_path / 'ablations.tsv'}", workdir=workdir)
    assert result.returncode != 0
    line = next(x for x in result.stdout.splitlines() if "prepare.categorical_columns" in x)
    assert ("compares 2 fusions (concat, gmu)" in line if "gmu" in table
            else "fusion-specific column(s) cross-attn-heads" in line)
    assert not (workdir / "results").exists() and "Job stats" not in result.stdout


def test_without_categorical_columns_one_fusion_plans_no_permutation_check(workdir, tmp_path):
    (tmp_path / "ablations.tsv").write_text(
        "categorical-fusion\tfreeze-base\nconcat\tfalse\nconcat\ttrue\n")
    none = override(workdir, "no-categories", "prepare: {categorical_columns: []}\n"
                                              "split: {test_fraction: 0, folds: 3, "
                                              "inner_val_fraction: 0}")
    result = snakemake("-n", "-p", "--configfile", none, "--config",
                       f"ablations={tmp_path / 'ablations.tsv'}", workdir=workdir)
    assert result.returncode == 0, result.stdout
    assert all("--permutation-check" not in b for b in job_blocks(result.stdout, "predict"))
    # validation is the test side: the baselines train on the training samples only
    shell = re.search(r"^Shell command: (.*)$", job_blocks(result.stdout, "linear_baseline")[0],
                      re.MULTILINE)[1]
    assert "val_samples" not in shell and "--categorical-columns" not in shell


def test_ablation_value_with_underscore_is_rejected(workdir):
    with open(workdir / "config" / "ablations.tsv", "a") as fh:
        fh.write("cross_attention\tfalse\n")
    result = snakemake("-n", workdir=workdir)
    assert result.returncode != 0
    assert "Error validating row 2 of data frame" in result.stdout
    assert "'cross_attention' does not match" in result.stdout


@pytest.mark.parametrize("rule,command", [("finetune", "train"), ("pretrain", "pretrain")])
def test_four_gpus_start_four_torchrun_processes(workdir, rule, command):
    result = snakemake("--profile", REPO / "profiles" / "slurm", "-n", "-p",
                       "--set-resources", f"{rule}:gpu=4", workdir=workdir)
    assert result.returncode == 0, result.stdout
    block = job_blocks(result.stdout, rule)[0]
    assert resources_of(block)["gpu"] == 4
    launcher = re.search(r"^Shell command: (.*?) --data-dir", block, re.MULTILINE)[1]
    # the job's runtime (the profile's default 60 minutes) leaves 6 minutes to stop cleanly
    assert launcher == (f"torchrun --standalone --nproc_per_node=4 -m aam.cli {command} "
                        "--parallel ddp --stop-after-minutes 54")


def test_multi_gpu_fsdp_in_the_config_launches_torchrun_with_fsdp(workdir):
    fsdp = override(workdir, "fsdp", "finetune:\n  multi_gpu: fsdp\n")
    result = snakemake("--profile", REPO / "profiles" / "slurm", "-n", "-p", "--configfile",
                       fsdp, workdir=workdir)
    assert result.returncode == 0, result.stdout
    shell = re.search(r"^Shell command: (.*)$", job_blocks(result.stdout, "finetune")[0],
                      re.MULTILINE)[1]
    assert shell.startswith("torchrun --standalone --nproc_per_node=2 -m aam.cli train "
                            "--parallel fsdp --stop-after-minutes 330 ")  # runtime 360
    assert "--multi-gpu" not in shell
    pretrain = re.search(r"^Shell command: (.*)$", job_blocks(result.stdout, "pretrain")[0],
                         re.MULTILINE)[1]
    assert pretrain.startswith("aam pretrain --stop-after-minutes 690 --data-dir")  # runtime 720
    assert "--parallel" not in pretrain


class _Resources(dict):
    __getattr__ = dict.get


def test_slurm_sbatch_line_requests_gpus_without_task_geometry(workdir):
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    result = snakemake("--profile", REPO / "profiles" / "slurm", "-n", "-p", workdir=workdir)
    assert result.returncode == 0, result.stdout
    block = job_blocks(result.stdout, "finetune")[0]
    launcher = re.search(r"^Shell command: (.*?) --data-dir", block, re.MULTILINE)[1]
    assert launcher == ("torchrun --standalone --nproc_per_node=2 -m aam.cli train --parallel ddp "
                        "--stop-after-minutes 330")  # stops itself 30 minutes before -t 360
    resources = _Resources(resources_of(block))
    assert "tasks" not in resources and "tasks_per_gpu" not in resources
    job = SimpleNamespace(resources=resources, threads=16, name="finetune")
    params = {"run_uuid": "uuid", "slurm_logfile": "slurm.log", "comment_str": "rule_finetune",
              "account": f"-A {resources['slurm_account']}",
              "partition": f"-p {resources['slurm_partition']}", "workdir": str(workdir)}
    call = get_submit_command(job, params) + set_gres_string(job)
    assert " --gpus=2" in call and "--cpus-per-gpu=8" in call
    assert "-A your-account" in call and "-p gpu" in call
    assert "--mem 64000" in call and "-t 360" in call
    assert "--ntasks" not in call and "--cpus-per-task" not in call
    explain = resources_of(job_blocks(result.stdout, "explain")[0])
    # never --gpus on a CPU partition
    assert (explain["gpu"], explain["slurm_partition"]) == (1, "gpu")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A workdir where the default pipeline ran with a stand-in `aam`, so reruns can be planned."""
    workdir = tmp_path_factory.mktemp("finished")
    shutil.copytree(REPO / "config", workdir / "config")
    fake_bin = workdir / "bin"
    fake_bin.mkdir()
    (fake_bin / "aam").write_text(FAKE_AAM.format(python=sys.executable))
    (fake_bin / "aam").chmod(0o755)
    result = snakemake("--cores", 1, workdir=workdir, path_prefix=fake_bin)
    assert result.returncode == 0, result.stdout
    assert (workdir / "results" / "report" / "summary.md").exists()
    return workdir


def test_finished_run_has_nothing_to_do(finished_run):
    result = snakemake("-n", workdir=finished_run)
    assert result.returncode == 0, result.stdout
    assert "Nothing to be done" in result.stdout


def test_new_ablation_row_trains_only_that_row(finished_run, tmp_path):
    table = (finished_run / "config" / "ablations.tsv").read_text() + "gmu\ttrue\n"
    (tmp_path / "ablations.tsv").write_text(table)
    result = snakemake("-n", "-p", "--config", f"ablations={tmp_path / 'ablations.tsv'}",
                       workdir=finished_run)
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout) == {"finetune": 1, "predict": 1, "explain": 1,
                                         "compare_models": 1, "all": 1}
    assert "ablation=categorical-fusion~gmu_freeze-base~true" in job_blocks(result.stdout,
                                                                            "finetune")[0]


def test_removed_ablation_row_leaves_the_comparison(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)  # keeps mtimes and .snakemake records
    header, first, *_ = (workdir / "config" / "ablations.tsv").read_text().splitlines(True)
    (tmp_path / "ablations.tsv").write_text(header + first)
    result = snakemake("--cores", 1, "--config", f"ablations={tmp_path / 'ablations.tsv'}",
                       workdir=workdir, path_prefix=workdir / "bin")
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout) == {"compare_models": 1, "all": 1}
    listed = (workdir / "results" / "report" / "run_list.txt").read_text().splitlines()
    assert listed == ["results/finetune/categorical-fusion~concat_freeze-base~false/fold~0/seed~0/"
                      "predictions.tsv",
                      "results/rf/fold~0/seed~0/predictions.tsv",
                      "results/linear/fold~0/seed~0/predictions.tsv"]
    # the removed row's results stay on disk; only the run list decides what is compared
    assert (workdir / "results" / "finetune" /
            "categorical-fusion~cross-attention_freeze-base~false").is_dir()


@pytest.mark.parametrize(
    ("change", "expected"),
    [("compare: {n_bootstrap: 500}", {"compare_models": 1, "all": 1}),
     ("finetune: {epochs: 7}", {"finetune": 2, "predict": 2, "explain": 2, "compare_models": 1,
                                  "all": 1})],
)
def test_config_change_reruns_only_dependent_jobs(finished_run, tmp_path, change, expected):
    result = snakemake("-n", "--configfile", override(tmp_path, "change", change),
                       workdir=finished_run)
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout) == expected


def _commands_missing() -> list[str]:
    from aam.cli.__main__ import COMMANDS

    missing = []
    for name, (module, _) in COMMANDS.items():
        try:
            __import__(module)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


@pytest.mark.slow
def test_end_to_end_run_and_report(workdir):
    assert not _commands_missing(), f"aam commands not written yet: {_commands_missing()}"
    result = snakemake("--configfile", "tests/data/config.yaml", "--cores", 2, workdir=workdir)
    logs = ("\n".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))
            if not result.returncode else "")
    assert result.returncode == 0, result.stdout[-3000:] + logs[-3000:]
    comparison = (workdir / "results" / "report" / "comparison.tsv").read_text()
    assert "rf" in comparison and "cross-attention" in comparison
    report = snakemake("--configfile", "tests/data/config.yaml", "--report", "report.html",
                       workdir=workdir)
    assert report.returncode == 0, report.stdout
    html = (workdir / "report.html").read_text()
    assert "comparison.tsv" in html and "predicted_vs_actual.svg" in html
    assert re.search(r'verdict": "[^"]* RF', html)
