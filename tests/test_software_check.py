"""The workflow stops before scheduling, in one line, when the rules' `aam` cannot run; and the
conda deployment installs aam itself through the post-deploy script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _dry_run(workdir: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    (bin_dir / "snakemake").symlink_to(BIN / "snakemake")  # snakemake, but not the venv's aam
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    return subprocess.run([str(bin_dir / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"),
                           "-d", str(workdir), "-n"], cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


@pytest.fixture
def bin_dir(tmp_path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def test_missing_aam_names_the_environment_to_activate(workflow_workdir, bin_dir):
    result = _dry_run(workflow_workdir, bin_dir)
    assert result.returncode != 0
    line = next(x for x in result.stdout.splitlines() if "`aam` command is not on PATH" in x)
    assert "conda activate aam" in line and "--software-deployment-method conda" in line
    assert "rule " not in result.stdout  # nothing was scheduled


def test_aam_without_torch_is_named(workflow_workdir, bin_dir):
    (bin_dir / "python3").symlink_to("/bin/false")  # an interpreter whose package check fails
    fake = bin_dir / "aam"
    fake.write_text(f"#!{bin_dir / 'python3'}\n")
    fake.chmod(0o755)
    result = _dry_run(workflow_workdir, bin_dir)
    assert result.returncode != 0
    assert "runs in a Python without the aam package or torch" in result.stdout


def test_conda_env_installs_aam_after_deployment():
    """The wiring only: no conda on the test machines, so the environment is not built here."""
    env = REPO / "workflow" / "envs"
    script = (env / "aam.post-deploy.sh").read_text()
    assert "pip install --no-deps --no-build-isolation --editable \"$source\"" in script
    assert os.access(env / "aam.post-deploy.sh", os.X_OK)
    deps = yaml.safe_load((env / "aam.yaml").read_text())["dependencies"]
    assert "pip" in deps and any(str(d).startswith("setuptools") for d in deps)
    # the build backend pip needs without build isolation is in the environment
    assert "setuptools" in (REPO / "pyproject.toml").read_text().split("[project]")[0]
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'os.environ.setdefault("AAM_SOURCE", os.path.dirname(workflow.basedir))' in common
