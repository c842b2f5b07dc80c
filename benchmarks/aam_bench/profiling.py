"""Where one training step spends its time: forward by component, backward, optimiser, and the
top operators by self CPU time (``torch.profiler``)."""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from aam.data.dataset import make_loader
from aam.data.prepared import load_prepared
from aam.training.schedule import build_optimizer

COMPONENTS = {  # label -> attribute path inside the encoder
    "nucleotide encoder": "nucleotide",
    "sample encoder (ASV transformer)": "sample",
    "sample transformer + pooling": "sample_layers",
}


def _time_components(encoder: torch.nn.Module, totals: dict) -> list:
    """Forward hooks adding each component's wall time (forward only) to ``totals``."""
    handles, start = [], {}
    for label, name in COMPONENTS.items():
        module = getattr(encoder, name)
        handles.append(module.register_forward_pre_hook(
            lambda m, a, label=label: start.__setitem__(label, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, a, o, label=label: totals.__setitem__(
                label, totals[label] + time.perf_counter() - start[label])))
    return handles


def profile_stage(spec: dict, device: torch.device, steps: int = 3, top: int = 12) -> dict:
    """Profile ``spec["stage"]`` (pretrain or finetune) on one repeated batch.

    Returns
    -------
    dict
        ``{"stage", "step_s", "phases": {label: seconds per step}, "top_ops": [{"name",
        "self_cpu_ms", "percent", "calls"}]}``; forward components are inclusive wall times.
    """
    from aam_bench.worker import build_stage

    stage = build_stage({**spec, "kind": spec["stage"]}, load_prepared(spec["prepared_dir"]))
    model, objective = stage.model.to(device), stage.objective
    loader = make_loader(stage.train_set, spec["batch_size"], shuffle=True, seed=spec["seed"],
                         drop_last=True)
    batch = next(iter(loader)).to(device)
    optimizer = build_optimizer(model, stage.cfg.train, stage.param_groups)
    model.train()

    def step(phases):
        t0 = time.perf_counter()
        loss, _ = objective.loss(model, batch)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        phases["forward (all)"] += t1 - t0
        phases["backward"] += t2 - t1
        phases["optimizer"] += t3 - t2

    step(defaultdict(float))  # warmup
    phases: dict = defaultdict(float)
    handles = _time_components(model.encoder, phases)
    for _ in range(steps):
        step(phases)
    for handle in handles:
        handle.remove()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(defaultdict(float))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top_ops = [{"name": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "percent": 100.0 * e.self_cpu_time_total / total, "calls": e.count}
               for e in events[:top]]
    per_step = {k: v / steps for k, v in phases.items()}
    return {"stage": spec["stage"], "batch_size": spec["batch_size"],
            "step_s": per_step["forward (all)"] + per_step["backward"] + per_step["optimizer"],
            "phases": per_step, "top_ops": top_ops}
