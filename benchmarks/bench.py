"""AAM benchmark harness: ``python benchmarks/bench.py --data ibd|sim [--quick]``.

Prints a markdown table (samples/s, peak memory, CPU use, FLOP efficiency, dedup savings for
pretrain, finetune, frozen-base finetune and predict, plus token_limit and batch-size sweeps)
and writes it to ``<results-dir>/<machine>-<date>.{md,json}``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from aam.cli.common import add_common_flags, run  # noqa: E402

from aam_bench.report import machine_info, render, today, write_results  # noqa: E402
from aam_bench.runner import run_benchmark  # noqa: E402
from aam_bench.settings import STAGES, BenchConfig, quick  # noqa: E402


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    d = BenchConfig()
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("ibd", "sim"), default=d.data)
    p.add_argument("--quick", action="store_true",
                   help="1 warmup + 2 timed steps, two sweep points, no profile")
    p.add_argument("--prepared-dir", help="reuse this `aam prepare` folder (with distances.h5)")
    p.add_argument("--cache-dir", default=str(HERE / "out"), help="prepared data cache")
    p.add_argument("--results-dir", help="default: benchmarks/results (benchmarks/out/results "
                                         "with --quick)")
    p.add_argument("--embedding-dim", type=int, default=d.embedding_dim)
    p.add_argument("--layers", type=int, default=d.layers, help="layers per level")
    p.add_argument("--heads", type=int, default=d.attention_heads)
    p.add_argument("--token-limit", type=int, default=d.token_limit)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--timed-steps", type=int, default=d.timed_steps)
    p.add_argument("--sweep-steps", type=int, default=d.sweep_steps)
    p.add_argument("--token-limits", type=_ints, default=d.token_limits, help="e.g. 128,256")
    p.add_argument("--batch-sizes", type=_ints, default=d.batch_sizes, help="e.g. 4,8,16")
    p.add_argument("--sweep-stage", choices=STAGES, default=d.sweep_stage)
    p.add_argument("--stages", default=",".join(d.stages), help="comma-separated subset")
    p.add_argument("--threads", type=int, default=d.threads, help="0 = torch default")
    p.add_argument("--device", default=d.device, help="cpu | cuda | auto")
    p.add_argument("--in-process", action="store_true",
                   help="no subprocess per measurement (peak memory then not isolated)")
    p.add_argument("--no-profile", action="store_true", help="skip the one-step profiles")
    p.add_argument("--epoch-samples", type=int, default=d.epoch_samples,
                   help="training samples of the whole-epoch frozen vs unfrozen timing (0 = skip)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="epochs of that timing (epochs 2+ are reported)")
    p.add_argument("--sim-samples", type=int, default=d.sim_samples)
    p.add_argument("--sim-asvs", type=int, default=d.sim_asvs)
    p.add_argument("--seed", type=int, default=d.seed)
    add_common_flags(p)
    return p


def build_config(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig(
        data=args.data, prepared_dir=args.prepared_dir, cache_dir=args.cache_dir,
        embedding_dim=args.embedding_dim, attention_heads=args.heads, layers=args.layers,
        token_limit=args.token_limit, batch_size=args.batch_size,
        warmup_steps=args.warmup_steps, timed_steps=args.timed_steps,
        sweep_steps=args.sweep_steps, token_limits=tuple(args.token_limits),
        batch_sizes=tuple(args.batch_sizes), sweep_stage=args.sweep_stage,
        stages=tuple(s.strip() for s in args.stages.split(",") if s.strip()),
        threads=args.threads, device=args.device, in_process=args.in_process,
        profile=not args.no_profile, epoch_samples=args.epoch_samples, epochs=args.epochs,
        sim_samples=args.sim_samples, sim_asvs=args.sim_asvs,
        seed=args.seed)
    return replace(cfg, **quick(cfg)) if args.quick else cfg


def _body(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    results = run_benchmark(cfg)
    results.update(machine=machine_info(cfg.threads), date=today())
    default = HERE / "out" / "results" if args.quick else HERE / "results"
    md, js = write_results(results, args.results_dir or default)
    sys.stdout.write(render(results))
    sys.stdout.write(f"\nwrote {md} and {js}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on input errors)."""
    return run(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
