"""Machine description, markdown tables and the results files of a harness run."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from aam.atomic import write_json, write_text

STAGE_COLUMNS = ("stage", "samples/s", "vs reference", "step s (median)", "peak RSS MiB",
                 "CPU util", "GFLOP/sample", "% matmul peak", "dedup saved", "ASVs/sample")
SWEEP_COLUMNS = ("token_limit", "batch", "samples/s", "peak RSS MiB", "CPU util",
                 "GFLOP/sample", "% matmul peak", "dedup saved", "ASVs/sample (padded)")


def cpu_model() -> str:
    """The CPU model name (``lscpu``, else /proc/cpuinfo, else ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int = 0) -> dict:
    """CPU model, usable cores, torch version and threads, GPU name (if any)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_model(), "cores": cores, "torch": torch.__version__,
            "torch_threads": threads or torch.get_num_threads(),
            "python": platform.python_version(), "os": platform.platform(terse=True),
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_slug(info: dict) -> str:
    """A file-name-safe machine name, e.g. ``amd-epyc-2cores`` or ``nvidia-h100-80gb-hbm3``."""
    name = info.get("gpu") or f"{info['cpu']} {info['cores']}cores"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def _common(row: dict) -> dict:
    gflop = row.get("flops_per_sample")
    return {"samples/s": _fmt(row.get("samples_per_s")),
            "peak RSS MiB": _fmt(row.get("peak_rss_mb"), ".0f"),
            "CPU util": _fmt(row.get("cpu_util")),
            "GFLOP/sample": _fmt(gflop / 1e9 if gflop else None),
            "% matmul peak": _fmt(100 * row["matmul_fraction"] if "matmul_fraction" in row
                                  else None, ".1f"),
            "dedup saved": _fmt(100 * row["dedup_fraction"] if "dedup_fraction" in row
                                else None, ".0f") + ("%" if "dedup_fraction" in row else "")}


def stage_rows(results: dict) -> list[dict]:
    """One table row (column -> text) per measured stage."""
    rows = []
    for stage, row in results["stages"].items():
        if "error" in row:
            rows.append({"stage": stage, "samples/s": f"failed: {row['error']}"})
            continue
        ref = results.get("reference", {}).get(stage, {})
        speedup = row["samples_per_s"] / ref["samples_per_s"] if ref else None
        rows.append({"stage": stage, **_common(row),
                     "vs reference": _fmt(speedup, ".1f") + ("x" if speedup else ""),
                     "step s (median)": _fmt(row.get("step_s_median"), ".3f"),
                     "ASVs/sample": _fmt(row.get("mean_asvs"), ".0f")})
    return rows


def sweep_rows(rows: list[dict]) -> list[dict]:
    """One table row per sweep point."""
    out = []
    for row in rows:
        base = {"token_limit": str(row["token_limit"]), "batch": str(row["batch_size"])}
        if "error" in row:
            out.append({**base, "samples/s": f"failed: {row['error']}"})
            continue
        padded = f"{_fmt(row.get('mean_asvs'), '.0f')} ({_fmt(row.get('mean_padded_asvs'), '.0f')})"
        out.append({**base, **_common(row), "ASVs/sample (padded)": padded})
    return out


def markdown_table(rows: list[dict], columns) -> str:
    """A GitHub markdown table; missing cells print as ``-``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r.get(c, "-") for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def render(results: dict) -> str:
    """The whole markdown report: machine, configuration, stage table, sweeps, profile."""
    cfg, data, m = results["config"], results["data"], results["machine"]
    matmul = results.get("matmul", {})
    parts = [
        f"# AAM benchmark: {m['cpu']} ({m['cores']} cores){' + ' + m['gpu'] if 'gpu' in m else ''}",
        f"{results['date']}; torch {m['torch']}, {m['torch_threads']} threads, python "
        f"{m['python']}; device {cfg['device']}; 1-min load average {_fmt(m.get('load_avg_1min'))} "
        f"at the end (other processes share the cores when it exceeds {m['cores']}); fp32 matmul "
        f"{_fmt(matmul.get('matmul_gflops'), '.1f')} GFLOP/s (n={matmul.get('matmul_size')}).",
        f"Data: {data['name']} ({data['n_samples']} samples, {data['n_asvs']} ASVs, min depth "
        f"{data['min_depth']}); {data['n_train']} train / {data['n_val']} val samples, "
        f"{data['split']}; fine-tuning target `{data['target_column']}` (regression), "
        f"categories {', '.join(data['categorical_columns']) or 'none'} (concat fusion).",
        f"Model: embedding {cfg['embedding_dim']}, {cfg['layers']} layers per level, "
        f"{cfg['attention_heads']} heads; token_limit {cfg['token_limit']}, batch "
        f"{cfg['batch_size']}, asv_sampling {cfg['asv_sampling']}; {cfg['warmup_steps']} "
        f"warmup + {cfg['timed_steps']} timed steps per stage, each in a fresh process.",
        "## Stages", markdown_table(stage_rows(results), STAGE_COLUMNS),
    ]
    parts += _epoch_section(results.get("epochs", []), cfg)
    for key, title in (("token_sweep", "token_limit"), ("batch_sweep", "batch size")):
        if results[key]:
            parts += [f"## {cfg['sweep_stage']} cost vs {title} ({cfg['sweep_steps']} timed "
                      "steps)", markdown_table(sweep_rows(results[key]), SWEEP_COLUMNS)]
    for prof in results.get("profile", []):
        parts += _profile_section(prof)
    return "\n\n".join(parts) + "\n"


def _epoch_section(rows: list[dict], cfg: dict) -> list[str]:
    """Whole fine-tuning epochs, unfrozen vs frozen base, and the speed-up between them."""
    done = {r["kind"]: r for r in rows if "error" not in r}
    if len(done) < 2:
        return [f"## Whole epochs failed: {r['error']}" for r in rows if "error" in r]
    table = [{"fine-tuning": "frozen base" if k == "epoch_frozen" else "trainable base",
              "epoch 1 s": _fmt(r["epoch_s"][0]), "epochs 2+ s (median)": _fmt(r["epoch_s_warm"]),
              "samples/s (2+)": _fmt(r["samples_per_s"])} for k, r in sorted(done.items())]
    speedup = done["epoch_unfrozen"]["epoch_s_warm"] / done["epoch_frozen"]["epoch_s_warm"]
    return [f"## Whole fine-tuning epochs ({done['epoch_frozen']['samples']} training samples, "
            f"{cfg['epochs']} epochs)",
            markdown_table(table, ("fine-tuning", "epoch 1 s", "epochs 2+ s (median)",
                                   "samples/s (2+)")),
            f"Frozen-base epoch speed-up (epochs 2+): **{speedup:.1f}x**."]


def _profile_section(prof: dict) -> list[str]:
    if "error" in prof:
        return [f"## Profile failed: {prof['error']}"]
    phases = [{"phase": k, "ms/step": _fmt(1e3 * v, ".1f"),
               "% of step": _fmt(100 * v / prof["step_s"], ".0f")}
              for k, v in prof["phases"].items()]
    ops = [{"operator": o["name"], "self CPU ms": _fmt(o["self_cpu_ms"], ".1f"),
            "%": _fmt(o["percent"], ".1f"), "calls": str(o["calls"])} for o in prof["top_ops"]]
    return [f"## Profile of one {prof['stage']} step (batch {prof['batch_size']})",
            markdown_table(phases, ("phase", "ms/step", "% of step")),
            markdown_table(ops, ("operator", "self CPU ms", "%", "calls"))]


def write_results(results: dict, results_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<results_dir>/<machine>-<date>.{md,json}`` atomically; returns both paths."""
    stem = Path(results_dir) / f"{machine_slug(results['machine'])}-{results['date']}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    write_text(md, render(results))
    write_json(js, results)
    return md, js


def today() -> str:
    """Local date as YYYY-MM-DD."""
    return dt.date.today().isoformat()
