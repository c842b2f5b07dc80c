"""Shared test set-up: one torch thread, fixed seeds, paths to the shared real datasets."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# Fuzz tests of the readers (tests/test_fuzz_readers.py): a fixed seed and a few examples per
# reader in CI; `HYPOTHESIS_PROFILE=long pytest tests/test_fuzz_readers.py` runs 50x more,
# still derandomized (set HYPOTHESIS_PROFILE=explore for fresh random examples each run).
_FUZZ = dict(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
             deadline=None, print_blob=True)
settings.register_profile("ci", max_examples=40, derandomize=True, **_FUZZ)
settings.register_profile("long", max_examples=2000, derandomize=True, **_FUZZ)
settings.register_profile("explore", max_examples=2000, derandomize=False, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Test models are tiny: thread start-up costs more than it saves, and pytest shares the two
# CI cores with the subprocesses some tests start.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped (with the reason) where none is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu); run on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def shared_dataset(name: str) -> Path:
    """Path to ``../shared/data/<name>``, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} is absent (tests reach real data as ../shared/data)")
    return path


@pytest.fixture(scope="session")
def simulated_prepared(tmp_path_factory) -> Path:
    """32 simulated samples x 40 ASVs (seed 2), prepared once per session (target `target`)."""
    from aam.cli.__main__ import main as aam_main

    root = tmp_path_factory.mktemp("simulated")
    assert aam_main(["simulate", "--output-dir", str(root / "sim"), "--samples", "32",
                     "--asvs", "40", "--seed", "2"]) == 0
    assert aam_main(["prepare", "--table", str(root / "sim" / "table.biom"), "--metadata",
                     str(root / "sim" / "metadata.tsv"), "--tree", str(root / "sim" / "tree.nwk"),
                     "--metadata-column", "target", "--output-dir", str(root / "prep")]) == 0
    return root / "prep"


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """The tiny fixture table prepared once per session (target `ph`, UniFrac from its tree)."""
    from aam.cli.__main__ import main as aam_main

    data = REPO / "tests" / "data"
    out = tmp_path_factory.mktemp("tiny") / "prepared"
    assert aam_main(["prepare", "--table", str(data / "tiny-table.biom"), "--metadata",
                     str(data / "tiny-metadata.tsv"), "--tree", str(data / "tiny-tree.nwk"),
                     "--min-depth", "10", "--metadata-column", "ph",
                     "--output-dir", str(out)]) == 0
    return out


@pytest.fixture
def workflow_workdir(tmp_path: Path) -> Path:
    """A Snakemake working directory holding config/ and the test config, as in the repo."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "tests" / "data").mkdir(parents=True)
    for name in ("config.yaml", "ablations.tsv"):
        shutil.copy(REPO / "tests" / "data" / name, tmp_path / "tests" / "data" / name)
    return tmp_path
