"""Safe loading: checkpoints that would run code when unpickled and YAML with python tags are
refused with one line (and the code never runs); config values reach the shell quoted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aam.cli.__main__ import main as aam_main
from aam.training.checkpoint import Checkpoint

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--epochs", "1"]


class _Payload:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))




@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """A checkpoint-shaped file whose ``model_state`` runs ``touch MARKER`` when unpickled."""
    marker = tmp_path / "PWNED"
    payload = Checkpoint("predictor", {}, {"w": _Payload(f"touch {marker}")})
    path = tmp_path / "evil.pt"
    torch.save(payload.to_payload(), path)
    return path, marker


def test_crafted_checkpoint_really_runs_code_when_loaded_unsafely(evil):
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command, flag", [
    ("predict", "--model"),
    ("train", "--pretrained-encoder"),
    ("train", "--resume-from"),
    ("pretrain", "--resume-from"),
])
def test_code_carrying_checkpoint_is_refused_and_never_runs(command, flag, evil, tiny_prepared,
                                                            tmp_path, capsys):
    path, marker = evil
    out = tmp_path / "out"
    if command == "predict":
        argv = [command, "--model", str(path), "--data-dir", str(tiny_prepared), "--output",
                str(out / "predictions.tsv")]
    else:
        argv = [command, "--data-dir", str(tiny_prepared), "--output-dir", str(out), *TINY,
                flag, str(path)]
    code = aam_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert re.fullmatch(
        rf"aam {command}: error: .*evil\.pt is not a plain AAM checkpoint and was not loaded: it "
        r"holds objects that could run code \(.*GLOBAL .*system.*\)\. Use a checkpoint written "
        r"by aam\.", err[-1])
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize("command", ["pretrain", "train"])
def test_yaml_with_python_tag_is_refused_and_never_runs(command, tiny_prepared, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    config = tmp_path / "evil.yaml"
    config.write_text(f"train: !!python/object/apply:os.system ['touch {marker}']\n")
    code = aam_main([command, "--data-dir", str(tiny_prepared), "--output-dir", str(tmp_path / "o"),
                     "--config", str(config)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"aam {command}: error: {config} is not plain YAML at line 1: "
                             "could not determine a constructor for the tag")
    assert "python tags such as !!python/object are never loaded" in err[0]
    assert not marker.exists()


def test_library_loads_checkpoints_only_with_weights_only():
    calls = []
    for path in (REPO / "aam").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("#")[0]
            if re.search(r"\btorch\.load\(|\bpickle\.loads?\(|\byaml\.(unsafe_)?load\(", code):
                calls.append((path.name, code.strip()))
    assert calls, "expected at least the checkpoint loader"
    assert all("weights_only=True" in code for _, code in calls), calls




def test_config_values_with_spaces_and_semicolons_reach_the_shell_quoted(workflow_workdir):
    """A dry run (-p prints each job's shell command) with hostile paths and column names."""
    hostile = workflow_workdir / "my data; touch PWNED"
    hostile.mkdir()
    for name in ("table.biom", "metadata.tsv", "tree.nwk"):
        (hostile / name).write_text("x\n")
    (workflow_workdir / "hostile.yaml").write_text(
        "input:\n"
        f"  table: '{hostile}/table.biom'\n"
        f"  metadata: '{hostile}/metadata.tsv'\n"
        f"  tree: '{hostile}/tree.nwk'\n"
        "prepare:\n  target: 'ph value; touch PWNED'\n  categorical_columns: ['body site;id']\n"
    )
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "-d",
         str(workflow_workdir), "-n", "-p", "--configfile", "hostile.yaml"],
        cwd=workflow_workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120)
    assert result.returncode == 0, result.stdout
    commands = [line.strip().removeprefix("Shell command:").strip()
                for line in result.stdout.splitlines() if " aam " in f" {line}"]
    commands = [c for c in commands if c.startswith("aam ")]
    assert any(c.startswith("aam prepare") for c in commands), result.stdout
    for command in commands:
        # every occurrence of a hostile value sits inside single quotes
        unquoted = re.sub(r"'[^']*'", "''", command)
        assert ";" not in unquoted.split(">")[0], command
        assert "my data" not in unquoted and "ph value" not in unquoted, command
    assert not (workflow_workdir / "PWNED").exists()
