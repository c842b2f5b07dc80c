"""Smoke tests of the benchmark harness (benchmarks/): it runs on a tiny simulated config and
reports every stage with the expected columns. No test looks at a timing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aam.errors import InputError

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from aam_bench.report import STAGE_COLUMNS, SWEEP_COLUMNS  # noqa: E402
from aam_bench.settings import BenchConfig  # noqa: E402

import bench  # noqa: E402

TINY = ["--data", "sim", "--quick", "--in-process", "--sim-samples", "16", "--sim-asvs", "24",
        "--embedding-dim", "16", "--layers", "1", "--heads", "2", "--token-limit", "16",
        "--batch-size", "4", "--token-limits", "8,16", "--batch-sizes", "4"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One in-process harness run on 16 simulated samples with a d=16 one-layer model."""
    out = tmp_path_factory.mktemp("bench")
    argv = TINY + ["--cache-dir", str(out / "cache"), "--results-dir", str(out / "results")]
    return bench.main(argv), out / "results"


def _header(text: str, first: str) -> list[str]:
    line = next(row for row in text.splitlines() if row.startswith(f"| {first} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.slow  # shares one tiny in-process harness run (a few seconds)
def test_harness_prints_stage_table_with_expected_columns(tiny_run, capsys):
    code, _ = tiny_run
    printed = capsys.readouterr().out or (next(tiny_run[1].glob("*.md"))).read_text()
    assert code == 0
    assert _header(printed, "stage") == list(STAGE_COLUMNS)
    assert _header(printed, "token_limit") == list(SWEEP_COLUMNS)
    rows = [row.split("|")[1].strip() for row in printed.splitlines() if row.startswith("| ")]
    for stage in ("pretrain", "finetune", "finetune_frozen", "predict"):
        assert stage in rows


@pytest.mark.slow  # shares one tiny in-process harness run (a few seconds)
def test_results_files_record_config_machine_and_every_measurement(tiny_run):
    _, results_dir = tiny_run
    (js,) = results_dir.glob("*.json")
    assert js.with_suffix(".md").exists()
    results = json.loads(js.read_text())
    assert results["config"]["embedding_dim"] == 16 and results["config"]["token_limit"] == 16
    assert results["machine"]["cores"] >= 1 and results["machine"]["torch"]
    assert results["matmul"]["matmul_gflops"] > 0
    assert set(results["stages"]) == {"pretrain", "finetune", "finetune_frozen", "predict"}
    for row in results["stages"].values():
        assert row["samples"] > 0 and row["samples_per_s"] > 0 and row["peak_rss_mb"] > 0
        assert 0.0 <= row["dedup_fraction"] < 1.0 and row["flops_per_sample"] > 0
    assert [r["token_limit"] for r in results["token_sweep"]] == [8, 16]
    assert all(r["mean_asvs"] <= 8 for r in results["token_sweep"][:1])


@pytest.mark.slow  # shares one tiny in-process harness run (a few seconds)
def test_frozen_base_trains_fewer_parameters_and_counts_fewer_flops(tiny_run):
    _, results_dir = tiny_run
    stages = json.loads(next(results_dir.glob("*.json")).read_text())["stages"]
    full, frozen = stages["finetune"], stages["finetune_frozen"]
    # the fitted start keeps the sequence encoder frozen (abundance_head_encoder frozen)
    assert frozen["n_trainable"] < full["n_trainable"] <= full["n_parameters"]
    assert frozen["flops_per_sample"] < full["flops_per_sample"]


def test_odd_batch_size_is_rejected():
    with pytest.raises(InputError, match="batch sizes must be even"):
        BenchConfig(batch_sizes=(4, 7))


def test_unknown_stage_is_rejected():
    with pytest.raises(InputError, match="Unknown stage"):
        BenchConfig(stages=("pretrain", "distill"))


def test_scaling_runs_the_commands_one_process_and_under_torchrun(tmp_path, capsys):
    import scaling

    argv = ["--data", "sim", "--sim-samples", "32", "--sim-asvs", "40", "--stages", "train",
            "--processes", "1,2", "--epochs", "2", "--global-batch", "8", "--embedding-dim",
            "16", "--layers", "1", "--heads", "2", "--token-limit", "32", "--threads", "2",
            "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results")]
    assert scaling.main(argv) == 0
    rows = json.loads(next((tmp_path / "results").glob("scaling-*.json")).read_text())["rows"]
    assert [(r["launch"], r["processes"], r["batch/process"]) for r in rows] == [
        ("none", 1, 8), ("ddp", 2, 4)]
    assert all(r["samples/s"] > 0 for r in rows)
    assert "| train | ddp | 2 |" in capsys.readouterr().out
    ddp = json.loads((tmp_path / "runs" / "train-ddp-2" / "metrics.json").read_text())
    assert ddp["world_size"] == 2


def test_scaling_refuses_data_parallel_without_cuda(capsys):
    import scaling

    assert scaling.main(["--strategies", "dp"]) == 2
    assert "needs --device cuda" in capsys.readouterr().err
