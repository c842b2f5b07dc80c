"""Shipped example configs: none points at the development-only ../shared/data, and a copy of
config/examples/qiime2-study.yaml filled with the moving-pictures files dry-runs the workflow."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, shared_dataset
from test_workflow import job_blocks, job_counts, snakemake

EXAMPLES = sorted((REPO / "config").rglob("*.yaml"))
# the moving-pictures exports standing in for the artifacts the example names
MOVING_PICTURES = {"table": "table.biom", "rep_seqs": "rep-seqs.fasta",
                   "metadata": "sample-metadata.tsv", "tree": "rooted-tree.nwk",
                   "taxonomy": "taxonomy.tsv"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_never_point_at_the_development_data(path):
    assert "shared/data" not in path.read_text(), f"{path} points at ../shared/data"


def test_qiime2_example_names_the_qiime2_artifacts():
    example = REPO / "config" / "examples" / "qiime2-study.yaml"
    inputs = yaml.safe_load(example.read_text())["input"]
    names = {k: Path(v).name for k, v in inputs.items() if v}
    assert names == {"table": "table.qza", "rep_seqs": "rep-seqs.qza",
                     "metadata": "sample-metadata.tsv", "tree": "rooted-tree.qza",
                     "taxonomy": "taxonomy.qza"}


def dry_run_example(example: str, data: Path, files: dict, tmp_path: Path):
    """``snakemake -n -p`` in a copy of ``config/`` (what a fresh clone has besides workflow/)
    with the example's ``input`` keys pointed at ``files`` of the shared dataset ``data``."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "config", clone / "config")
    text = (clone / "config" / "examples" / example).read_text()
    for key, name in files.items():
        text, n = re.subn(rf"^(  {key}:) \S+", rf"\1 {data / name}", text, flags=re.MULTILINE)
        assert n == 1, key
    (clone / "config" / "my-study.yaml").write_text(text)
    return snakemake("-n", "-p", "--configfile", "config/my-study.yaml", workdir=clone)


def test_fresh_clone_dry_runs_the_qiime2_example_on_moving_pictures(tmp_path):
    data = shared_dataset("moving-pictures")
    result = dry_run_example("qiime2-study.yaml", data, MOVING_PICTURES, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    assert counts["prepare"] == 1 and counts["explain"] == counts["finetune"] == 2 * 3
    prepare = job_blocks(result.stdout, "prepare")[0]
    for name in MOVING_PICTURES.values():
        assert str(data / name) in prepare
    assert "--taxonomy" in prepare and "--metadata-column body-site" in prepare


def test_fresh_clone_dry_runs_the_tree_free_example_on_sleep_apnea(tmp_path):
    """The tree-free example plans pretraining on Bray-Curtis distances of a study with no
    tree (sleep-apnea: 184 samples, 16 mice, target age)."""
    data = shared_dataset("sleep-apnea")
    result = dry_run_example("tree-free-study.yaml", data,
                             {"table": "table.biom", "metadata": "metadata.tsv"}, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    assert counts["prepare"] == counts["pretrain"] == 1 and counts["finetune"] == 2
    prepare = job_blocks(result.stdout, "prepare")[0]
    assert "--beta-metric braycurtis" in prepare and "--tree" not in prepare
    assert "--metadata-column age" in prepare
