"""Plan the measurements of a harness run, run each in a fresh process, and collect the results."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from aam_bench.datasets import BenchData, ensure_data
from aam_bench.settings import BenchConfig

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # benchmarks/, so `-m aam_bench.worker` works
REFERENCE = {  # the reference implementation on a 2-core CPU, same settings
    "pretrain": {"samples_per_s": 2.6, "peak_rss_mb": 3.3 * 1024},
    "finetune": {"samples_per_s": 2.4, "peak_rss_mb": 4.5 * 1024},
}
BAR = {"speedup": 3.0, "peak_rss_mb": 2048.0, "cpu_util": 2.0}


def base_spec(cfg: BenchConfig, data: BenchData) -> dict:
    """The settings every measurement shares (model sizes, data, device, threads)."""
    return {"prepared_dir": str(data.prepared_dir), "train_samples": str(data.train_samples),
            "val_samples": str(data.val_samples), "target_column": data.target_column,
            "categorical_columns": list(data.categorical_columns),
            "embedding_dim": cfg.embedding_dim, "attention_heads": cfg.attention_heads,
            "layers": cfg.layers, "token_limit": cfg.token_limit, "batch_size": cfg.batch_size,
            "asv_sampling": cfg.asv_sampling, "warmup_steps": cfg.warmup_steps,
            "timed_steps": cfg.timed_steps, "threads": cfg.threads, "device": cfg.device,
            "seed": cfg.seed, "epoch_samples": cfg.epoch_samples, "epochs": cfg.epochs}


def plan(cfg: BenchConfig, data: BenchData) -> list[tuple[str, dict]]:
    """(section, spec) of every measurement, in run order."""
    base = base_spec(cfg, data)
    jobs = [("matmul", {**base, "kind": "matmul"})]
    jobs += [("stages", {**base, "kind": stage}) for stage in cfg.stages]
    if cfg.epoch_samples > 0:
        jobs += [("epochs", {**base, "kind": kind}) for kind in ("epoch_unfrozen", "epoch_frozen")]
    sweep = {**base, "kind": cfg.sweep_stage, "timed_steps": cfg.sweep_steps}
    jobs += [("token_sweep", {**sweep, "token_limit": t}) for t in cfg.token_limits]
    jobs += [("batch_sweep", {**sweep, "batch_size": b}) for b in cfg.batch_sizes]
    if cfg.profile:
        jobs += [("profile", {**base, "kind": "profile", "stage": stage})
                 for stage in ("pretrain", "finetune")]
    return jobs


def run_job(spec: dict, in_process: bool) -> dict:
    """One measurement: in a fresh ``python -m aam_bench.worker`` unless ``in_process``.

    A failed subprocess (e.g. out of memory) gives ``{"error": <last stderr line>}`` so the
    other measurements still run.
    """
    if in_process:
        from aam_bench.worker import measure

        return {**measure(spec), "isolated": False}
    with tempfile.TemporaryDirectory(prefix="aam-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        proc = subprocess.run([sys.executable, "-m", "aam_bench.worker", str(spec_path),
                               str(out_path)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or "").strip().splitlines() or [f"exit code {proc.returncode}"]
            log.warning("measurement %s failed: %s", spec["kind"], lines[-1])
            return {"error": lines[-1], "returncode": proc.returncode}
        return {**json.loads(out_path.read_text(encoding="utf-8")), "isolated": True}


def _same(spec: dict, main: dict) -> bool:
    keys = ("kind", "token_limit", "batch_size")
    return all(spec[k] == main[k] for k in keys)


def run_benchmark(cfg: BenchConfig) -> dict:
    """Prepare the data and run every planned measurement.

    Sweep points at the main settings reuse the main measurement instead of running again.

    Returns
    -------
    dict
        ``{"config", "data", "matmul", "stages": {stage: row}, "token_sweep": [row],
        "batch_sweep": [row], "profile": [row], "reference", "bar", "wall_s"}``.
    """
    start = time.perf_counter()
    data = ensure_data(cfg)
    results: dict = {"config": asdict(cfg), "data": _data_summary(data), "stages": {},
                     "token_sweep": [], "batch_sweep": [], "profile": [], "epochs": []}
    jobs = plan(cfg, data)
    main_specs = {spec["kind"]: spec for section, spec in jobs if section == "stages"}
    for section, spec in tqdm(jobs, desc="benchmark", disable=None):
        main = main_specs.get(spec["kind"])
        if section.endswith("_sweep") and main is not None and _same(spec, main):
            row, spec = dict(results["stages"][spec["kind"]]), main
        else:
            log.info("measuring %s %s", section, {k: spec.get(k) for k in
                                                   ("kind", "token_limit", "batch_size")})
            row = run_job(spec, cfg.in_process)
        row.update({"kind": spec["kind"], "token_limit": spec["token_limit"],
                    "batch_size": spec["batch_size"], "timed_steps": spec["timed_steps"]})
        if section == "matmul":
            results["matmul"] = row
        elif section == "stages":
            results["stages"][spec["kind"]] = row
        else:
            results[section].append(row)
    _add_efficiency(results)
    results.update(reference=REFERENCE, bar=BAR, wall_s=time.perf_counter() - start)
    return results


def _add_efficiency(results: dict) -> None:
    """Achieved fraction of the matmul rate: FLOPs/sample x samples/s / matmul FLOP/s."""
    rate = results.get("matmul", {}).get("matmul_gflops")
    rows = list(results["stages"].values()) + results["token_sweep"] + results["batch_sweep"]
    for row in rows:
        if rate and "flops_per_sample" in row:
            row["matmul_fraction"] = row["flops_per_sample"] * row["samples_per_s"] / (rate * 1e9)


def _data_summary(data: BenchData) -> dict:
    from aam.data.prepared import read_sample_list

    return {"name": data.name, "prepared_dir": str(data.prepared_dir),
            "n_samples": data.info.get("n_samples"), "n_asvs": data.info.get("n_asvs"),
            "min_depth": data.info.get("inputs", {}).get("min_depth"),
            "n_train": len(read_sample_list(data.train_samples)),
            "n_val": len(read_sample_list(data.val_samples)),
            "target_column": data.target_column,
            "categorical_columns": list(data.categorical_columns),
            "split": f"grouped by {data.group_column}, 20% of groups to validation"}
