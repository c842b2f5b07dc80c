"""Multi-process scaling of the real commands: ``aam pretrain`` / ``aam train``, one process
against torchrun (DDP, FSDP) and, on CUDA, one process over several GPUs (``--parallel dp``).

    python benchmarks/scaling.py --data ibd --processes 1,2            # CPU: 2 gloo processes
    python benchmarks/scaling.py --data ibd --device cuda --processes 1,2,4 \\
        --strategies ddp,fsdp,dp                                        # a GPU node (bf16)

Every run keeps the global batch (batch per process x processes) fixed, so the runs train the
same model on the same batches. Throughput is ``train_samples_per_s`` from the run's
``metrics.json``: the median over epochs 2+ of all processes' training samples / epoch seconds
(validation and checkpoints excluded). On the CPU each run gets the same threads in total
(``--threads`` split over the processes). Prints a markdown table and writes it with the machine
to ``<results-dir>/scaling-<machine>-<date>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from aam.atomic import write_json, write_text  # noqa: E402
from aam.cli.common import add_common_flags, run  # noqa: E402
from aam.errors import InputError  # noqa: E402

from aam_bench.datasets import ensure_data  # noqa: E402
from aam_bench.report import machine_info, machine_slug, markdown_table, today  # noqa: E402
from aam_bench.settings import BenchConfig  # noqa: E402

STRATEGIES = ("ddp", "fsdp", "dp")  # values of --parallel
COLUMNS = ("stage", "launch", "processes", "GPUs", "batch/process", "samples/s",
           "vs 1 process", "wall s")


@dataclass(frozen=True)
class ScalingConfig:
    """What to launch: dataset, device, process counts, strategies and the model size."""

    data: str = "ibd"
    prepared_dir: str | None = None
    cache_dir: str = "benchmarks/out"
    device: str = "cpu"
    processes: tuple[int, ...] = (1, 2)
    strategies: tuple[str, ...] = ("ddp",)
    stages: tuple[str, ...] = ("pretrain", "train")
    epochs: int = 3
    global_batch: int = 16
    embedding_dim: int = 64
    layers: int = 2
    heads: int = 4
    token_limit: int = 256
    sim_samples: int = 200
    sim_asvs: int = 300
    threads: int = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    out_dir: str = "benchmarks/out/scaling"
    results_dir: str = "benchmarks/results"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        if unknown:
            raise InputError(f"Unknown strategy {', '.join(unknown)}; choose from ddp, fsdp, dp.")
        if not self.stages or set(self.stages) - {"pretrain", "train"}:
            raise InputError(f"--stages must name pretrain and/or train; got {self.stages}.")
        if "dp" in self.strategies and self.device != "cuda":
            raise InputError("--strategies dp (--parallel dp) needs --device cuda.")
        uneven = [n for n in self.processes if self.global_batch % n or self.global_batch // n < 2]
        if uneven:
            raise InputError(f"--global-batch {self.global_batch} must split into batches of at "
                             f"least 2 over {uneven} processes.")


def launches(cfg: ScalingConfig) -> list[tuple[str, int]]:
    """(strategy, processes or GPUs) pairs: one plain process, then each strategy per count."""
    return [("none", 1)] + [(s, n) for n in cfg.processes if n > 1 for s in cfg.strategies]


def command(cfg: ScalingConfig, data, stage: str, strategy: str, n: int,
            out: Path) -> tuple[list[str], dict]:
    """The command line and environment of one run."""
    launcher = [sys.executable, "-m", "aam.cli"]
    if strategy in ("ddp", "fsdp"):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={n}", "-m", "aam.cli"]
    per_process = cfg.global_batch // n if strategy in ("ddp", "fsdp") else cfg.global_batch
    argv = [*launcher, stage, "--data-dir", str(data.prepared_dir), "--train-samples",
            str(data.train_samples), "--val-samples", str(data.val_samples), "--output-dir",
            str(out), "--epochs", str(cfg.epochs), "--batch-size", str(per_process),
            "--device", cfg.device, "--embedding-dim", str(cfg.embedding_dim),
            "--attention-layers", str(cfg.layers), "--attention-heads", str(cfg.heads),
            "--token-limit", str(cfg.token_limit), "--seed", "0", "--patience", "0"]
    if stage == "train":
        argv += ["--metadata-column", data.target_column,
                 "--categorical-columns", ",".join(data.categorical_columns)]
    if strategy != "none":
        argv += ["--parallel", strategy]
    processes = n if strategy in ("ddp", "fsdp") else 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cfg.threads // processes))}
    if strategy == "dp":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
    return argv, env


def measure(cfg: ScalingConfig) -> dict:
    """Run every launch of every stage; return the rows and the machine."""
    data = ensure_data(BenchConfig(data=cfg.data, prepared_dir=cfg.prepared_dir,
                                   cache_dir=cfg.cache_dir, sim_samples=cfg.sim_samples,
                                   sim_asvs=cfg.sim_asvs))
    rows = []
    for stage in cfg.stages:
        base = None
        for strategy, n in launches(cfg):
            out = Path(cfg.out_dir) / f"{stage}-{strategy}-{n}"
            argv, env = command(cfg, data, stage, strategy, n, out)
            print(f"running {stage}: {strategy} x {n}", file=sys.stderr, flush=True)
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise InputError(f"{stage} with {strategy} x {n} failed (exit "
                                 f"{done.returncode}): {done.stderr.strip().splitlines()[-1]}")
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            rate = metrics["train_samples_per_s"]
            base = rate if strategy == "none" else base
            processes = n if strategy in ("ddp", "fsdp") else 1
            rows.append({"stage": stage, "launch": strategy, "processes": processes,
                         "GPUs": n if cfg.device == "cuda" else 0,
                         "batch/process": cfg.global_batch // processes,
                         "samples/s": round(rate, 2), "vs 1 process": f"{rate / base:.2f}x",
                         "wall s": round(metrics.get("wall_s", metrics.get("wall_time_s")), 1)})
    return {"date": today(), "config": asdict(cfg), "data": data.name,
            "machine": machine_info(cfg.threads), "rows": rows}


def render(results: dict) -> str:
    cfg, machine = results["config"], results["machine"]
    where = machine.get("gpu") or f"{machine['cpu']}, {machine['cores']} cores"
    return "\n".join([
        f"# Scaling on {where} ({results['date']}, torch {machine['torch']})", "",
        f"{results['data']}, global batch {cfg['global_batch']}, embedding {cfg['embedding_dim']}, "
        f"{cfg['layers']} layers, {cfg['heads']} heads, token_limit {cfg['token_limit']}, "
        f"{cfg['epochs']} epochs, device {cfg['device']}, {cfg['threads']} threads in total.", "",
        markdown_table([{k: str(v) for k, v in row.items()} for row in results["rows"]],
                       COLUMNS), ""])


def build_parser() -> argparse.ArgumentParser:
    d = ScalingConfig()
    p = argparse.ArgumentParser(prog="scaling.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=d.data, choices=("ibd", "sim"))
    p.add_argument("--prepared-dir", help="reuse this `aam prepare` folder (with distances.h5)")
    p.add_argument("--cache-dir", default=d.cache_dir)
    p.add_argument("--device", default=d.device, choices=("cpu", "cuda"))
    p.add_argument("--processes", default="1,2", help="process (or GPU) counts, e.g. 1,2,4")
    p.add_argument("--strategies", default="ddp", help="of ddp, fsdp, dp (dp: CUDA only)")
    p.add_argument("--stages", default="pretrain,train")
    for name in ("epochs", "global_batch", "embedding_dim", "layers", "heads", "token_limit",
                 "threads", "sim_samples", "sim_asvs"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--out-dir", default=d.out_dir, help="the runs' output folders")
    p.add_argument("--results-dir", default=d.results_dir)
    add_common_flags(p)
    return p


def _csv(text: str, kind=str) -> tuple:
    return tuple(kind(v) for v in text.split(",") if v.strip())


def _config(args) -> ScalingConfig:
    fields = {k: v for k, v in vars(args).items() if k in ScalingConfig.__dataclass_fields__}
    return ScalingConfig(**{**fields, "processes": _csv(args.processes, int),
                            "strategies": _csv(args.strategies), "stages": _csv(args.stages)})


def _go(args: argparse.Namespace) -> None:
    results = measure(_config(args))
    text = render(results)
    stem = Path(args.results_dir) / f"scaling-{machine_slug(results['machine'])}-{results['date']}"
    write_text(stem.with_suffix(".md"), text)
    write_json(stem.with_suffix(".json"), results)
    print(text)


def main(argv: list[str] | None = None) -> int:
    return run(_go, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
