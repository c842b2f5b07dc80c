"""One measurement, meant to run in a fresh process: ``python -m aam_bench.worker SPEC OUT``.

A measurement trains (or predicts) for a fixed number of warmup and timed batches through the
library's own code paths (``fit``, ``run_passes``), then records throughput, CPU time, peak
memory (``VmHWM`` of this process; ``torch.cuda.max_memory_allocated`` on GPU), the ASV dedup
fraction and the model FLOPs of one batch. ``SPEC`` and ``OUT`` are JSON files.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from aam.atomic import write_json
from aam.config import DataConfig, FinetuneConfig, FusionConfig, ModelConfig, PretrainConfig
from aam.config import TrainConfig
from aam.data.dataset import SampleDataset, asv_dedup_fraction, make_loader
from aam.data.prepared import load_prepared, read_sample_list

log = logging.getLogger(__name__)


def memory_mb(field: str = "VmHWM") -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) of this process in MiB (ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StepWindow:
    """Iterate a DataLoader for ``fit``: the first epoch yields ``warmup`` batches, later epochs
    ``steps`` timed batches (restarting the loader when it runs out).

    A step's time runs from asking for its batch to asking for the next one, so it covers data
    loading, forward, backward and the optimiser step. ``fit`` reads ``dataset``, ``sampler`` and
    ``generator`` to reseed each epoch; they are forwarded.
    """

    def __init__(self, loader, warmup: int, steps: int) -> None:
        self.loader, self.warmup, self.steps = loader, warmup, steps
        self.dataset, self.sampler = loader.dataset, loader.sampler
        self.generator = loader.generator
        self.epochs = 0
        self.step_s: list[float] = []
        self.wall_s = self.cpu_s = 0.0
        self.samples = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        self.epochs += 1
        timed = self.epochs > 1
        it = iter(self.loader)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        last = wall0
        for _ in range(self.steps if timed else self.warmup):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(self.loader)
                batch = next(it)
            yield batch
            now = time.perf_counter()
            if timed:
                self.step_s.append(now - last)
                self.samples += batch.size
            last = now
        if timed:
            self.wall_s += time.perf_counter() - wall0
            self.cpu_s += time.process_time() - cpu0


def pretrain_config(spec: dict) -> PretrainConfig:
    """The pretraining config of a spec (``max_bp`` still 0: set from the data)."""
    return PretrainConfig(data=_data_config(spec), model=_model_config(spec),
                          train=_train_config(spec))


def finetune_config(spec: dict, frozen: bool = False) -> FinetuneConfig:
    """The fine-tuning config of a spec (regression on the dataset's target, concat fusion)."""
    data = replace(_data_config(spec), categorical_columns=tuple(spec["categorical_columns"]))
    return FinetuneConfig(data=data, model=_model_config(spec), fusion=FusionConfig(),
                          train=_train_config(spec), target_column=spec["target_column"],
                          target_layers=spec["layers"], freeze_base=frozen)


def _data_config(spec: dict) -> DataConfig:
    return DataConfig(token_limit=spec["token_limit"], batch_size=spec["batch_size"],
                      asv_sampling=spec["asv_sampling"])


def _model_config(spec: dict) -> ModelConfig:
    n = spec["layers"]
    return ModelConfig(embedding_dim=spec["embedding_dim"], attention_heads=spec["attention_heads"],
                       nucleotide_layers=n, asv_layers=n, sample_layers=n)


def _train_config(spec: dict) -> TrainConfig:
    return TrainConfig(epochs=2, seed=spec["seed"], device=spec["device"])


@dataclass
class Stage:
    """What a training stage needs: model, objective, datasets, AdamW groups, resolved config."""

    model: torch.nn.Module
    objective: object
    train_set: SampleDataset
    val_set: SampleDataset
    param_groups: list | None
    cfg: object
    vocab: dict = field(default_factory=dict)


def build_stage(spec: dict, data) -> Stage:
    """The model, objective and datasets of ``spec["kind"]`` (pretrain or a fine-tuning kind)."""
    from aam.data.tokens import longest

    train_ids = read_sample_list(spec["train_samples"])
    val_ids = read_sample_list(spec["val_samples"])[: spec["batch_size"]]
    seed = spec["seed"]
    if spec["kind"] == "pretrain":
        from aam.models.pretrain import PretrainModel
        from aam.training.pretrain import PretrainObjective

        cfg = pretrain_config(spec)
        max_bp = longest(data.sequences)
        cfg = replace(cfg, data=replace(cfg.data, max_bp=max_bp),
                      model=replace(cfg.model, max_bp=max_bp))
        train_set = SampleDataset(data, train_ids, cfg.data, with_distances=True, seed=seed)
        val_set = SampleDataset(data, val_ids, cfg.data, with_distances=True, seed=seed)
        objective = PretrainObjective(cfg.nucleotide_mask_rate, cfg.nucleotide_loss_weight,
                                      seed=seed)
        return Stage(PretrainModel(cfg), objective, train_set, val_set, None, cfg)
    from aam.models.predictor import Predictor
    from aam.training.finetune import parameter_groups
    from aam.training.finetune_data import build_setup, resolve_sizes
    from aam.training.finetune_objective import FinetuneObjective

    cfg = finetune_config(spec, frozen=spec["kind"] == "finetune_frozen")
    cfg = resolve_sizes(cfg, data, pretrained=False)
    setup = build_setup(cfg, data, train_ids, val_ids)
    model = Predictor(setup.cfg)
    objective = FinetuneObjective(setup.cfg, setup.transform, setup.classes, setup.groups,
                                  setup.actual, setup.class_weight)
    return Stage(model, objective, setup.train_set, setup.val_set,
                 parameter_groups(model, setup.cfg), setup.cfg, setup.vocab)


def measure_training(spec: dict, device: torch.device) -> dict:
    """Warmup + timed steps of pretraining or fine-tuning through ``aam.training.loop.fit``."""
    from aam.training.loop import fit

    from aam_bench.flops import training_flops

    data = load_prepared(spec["prepared_dir"])
    stage = build_stage(spec, data)
    model, objective, bs = stage.model, stage.objective, spec["batch_size"]
    loader = make_loader(stage.train_set, bs, shuffle=True, seed=spec["seed"], drop_last=True)
    window = StepWindow(loader, spec["warmup_steps"], spec["timed_steps"])
    val_loader = make_loader(stage.val_set, bs, shuffle=False, seed=spec["seed"])
    rss_before = memory_mb("VmRSS")
    fit(model, objective, window, val_loader, stage.cfg.train, param_groups=stage.param_groups,
        device=device)
    out = _timing(window.samples, window.wall_s, window.cpu_s, window.step_s)
    out["rss_before_steps_mb"] = rss_before
    out["peak_rss_mb"] = memory_mb()
    out.update(_token_stats(loader))
    model.train()
    out["flops_per_sample"] = training_flops(model, objective, next(iter(loader)).to(device))
    out["n_parameters"] = sum(p.numel() for p in model.parameters())
    out["n_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return out


def measure_epochs(spec: dict, device: torch.device) -> dict:
    """Whole fine-tuning epochs on ``epoch_samples`` training samples, frozen base or not.

    Reports the median seconds of epochs 2+ (the frozen base's caches are warm from epoch 2):
    the frozen-base speed-up is the ratio of the two rows.
    """
    from aam.training.loop import fit

    import tempfile

    from aam.atomic import write_lines

    data = load_prepared(spec["prepared_dir"])
    kind = "finetune_frozen" if spec["kind"] == "epoch_frozen" else "finetune"
    train_ids = read_sample_list(spec["train_samples"])[: spec["epoch_samples"]]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "train_samples.txt"
        write_lines(subset, train_ids)
        stage = build_stage({**spec, "kind": kind, "train_samples": str(subset)}, data)
    bs = spec["batch_size"]
    loader = make_loader(stage.train_set, bs, shuffle=True, seed=spec["seed"])
    val_loader = make_loader(stage.val_set, bs, shuffle=False, seed=spec["seed"])
    train_cfg = replace(stage.cfg.train, epochs=spec["epochs"])
    result = fit(stage.model, stage.objective, loader, val_loader, train_cfg,
                 param_groups=stage.param_groups, device=device)
    seconds = [row["seconds"] for row in result.history]
    warm = float(np.median(seconds[1:])) if len(seconds) > 1 else seconds[0]
    return {"samples": len(stage.train_set), "epoch_s": seconds, "epoch_s_warm": warm,
            "samples_per_s": len(stage.train_set) / warm, "peak_rss_mb": memory_mb()}


def measure_predict(spec: dict, device: torch.device) -> dict:
    """Warmup + timed batches of ``aam.inference.run_passes`` (ASV cache on, one pass)."""
    from aam.data.categories import encode_categories
    from aam.inference import PredictConfig, run_passes

    from aam_bench.flops import inference_flops

    data = load_prepared(spec["prepared_dir"])
    stage = build_stage({**spec, "kind": "finetune"}, data)
    model, cfg = stage.model, stage.cfg
    bs, seed = spec["batch_size"], spec["seed"]
    val_ids = read_sample_list(spec["val_samples"])
    need = (spec["warmup_steps"] + spec["timed_steps"]) * bs
    ids = [val_ids[i % len(val_ids)] for i in range(need)]

    def dataset(chosen):
        cat_ids = None
        if cfg.data.categorical_columns:
            cat_ids = encode_categories(data.metadata, stage.vocab, chosen)[0]
        return SampleDataset(data, chosen, cfg.data, cat_ids=cat_ids, seed=seed)

    pcfg = PredictConfig(batch_size=bs, device=str(device), seed=seed)
    run_passes(model, dataset(ids[: spec["warmup_steps"] * bs]), 1, seed, pcfg, device)
    timed = dataset(ids[spec["warmup_steps"] * bs:])
    rss_before = memory_mb("VmRSS")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run_passes(model, timed, 1, seed, pcfg, device)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    out = _timing(len(timed), wall, cpu, [wall / spec["timed_steps"]])
    out["rss_before_steps_mb"] = rss_before
    out["peak_rss_mb"] = memory_mb()
    loader = make_loader(timed, bs, shuffle=False, seed=seed)
    out.update(_token_stats(loader))
    out["flops_per_sample"] = inference_flops(model, next(iter(loader)).to(device))
    out["n_parameters"] = sum(p.numel() for p in model.parameters())
    return out


def _timing(samples: int, wall: float, cpu: float, step_s: list[float]) -> dict:
    return {"samples": samples, "wall_s": wall, "cpu_s": cpu,
            "samples_per_s": samples / max(wall, 1e-9), "cpu_util": cpu / max(wall, 1e-9),
            "step_s_median": float(np.median(step_s)) if step_s else float("nan")}


def _token_stats(loader) -> dict:
    """Dedup fraction and mean real / padded ASV positions per sample over one epoch."""
    batches = list(loader)
    real = sum(int(b.asv_mask.sum()) for b in batches)
    padded = sum(b.asv_mask.numel() for b in batches)
    n = max(sum(b.size for b in batches), 1)
    return {"dedup_fraction": asv_dedup_fraction(batches), "mean_asvs": real / n,
            "mean_padded_asvs": padded / n}


def measure(spec: dict) -> dict:
    """Run the measurement ``spec["kind"]`` in this process and return its numbers."""
    from aam.training.device import resolve_device

    from aam_bench.flops import matmul_rate

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = resolve_device(spec["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    kind = spec["kind"]
    if kind == "matmul":
        out = matmul_rate(device)
    elif kind == "profile":
        from aam_bench.profiling import profile_stage

        out = profile_stage(spec, device)
    elif kind == "predict":
        out = measure_predict(spec, device)
    elif kind in ("epoch_unfrozen", "epoch_frozen"):
        out = measure_epochs(spec, device)
    else:
        out = measure_training(spec, device)
    out["threads"] = torch.get_num_threads()
    out["device"] = str(device)
    if device.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m aam_bench.worker SPEC.json OUT.json``."""
    spec_path, out_path = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    write_json(out_path, measure(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
