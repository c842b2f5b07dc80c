"""Tiny simulated + prepared folders and a tiny fine-tuning config, shared by the fine-tuning
tests."""

from __future__ import annotations

from pathlib import Path

from aam.cli.__main__ import main as aam_main
from aam.data.simulate import SimulationConfig, simulate, write_simulation
from aam.config import DataConfig, FinetuneConfig, FusionConfig, ModelConfig, TrainConfig


def make_prepared(root: Path, task: str = "regression", samples: int = 32,
                  tree_height: float = 0.3) -> Path:
    """Simulate ``samples`` samples x 40 ASVs and prepare them; returns the prepared folder.

    A larger ``tree_height`` makes clades differ more in sequence, so even an untrained (frozen)
    nucleotide encoder tells them apart.
    """
    sim, prepared = root / "sim", root / f"prepared-{task}"
    if not (sim / "table.biom").exists():
        write_simulation(simulate(SimulationConfig(
            n_samples=samples, n_asvs=40, seq_length=100, n_subjects=8,
            tree_height=tree_height)), sim)
    column, cats = ("target", "category,batch") if task == "regression" else ("category", "batch")
    assert aam_main(["prepare", "--table", str(sim / "table.biom"), "--metadata",
                     str(sim / "metadata.tsv"), "--metadata-column", column, "--task", task,
                     "--categorical-columns", cats, "--output-dir", str(prepared)]) == 0
    return prepared


def tiny_finetune_cfg(fusion: str = "concat", columns=("category",), epochs: int = 2,
                      task: str = "regression", **kw) -> FinetuneConfig:
    """d=16, 1 layer, 2 heads; at most 16 ASVs per sample; CPU; the attention path built (also
    without categorical columns) unless ``attention_path`` says otherwise."""
    kw.setdefault("attention_path", True)
    data_kw = {k: kw.pop(k) for k in list(kw) if k in DataConfig.__dataclass_fields__}
    fusion_kw = {k: kw.pop(k) for k in list(kw) if k in FusionConfig.__dataclass_fields__}
    train_kw = {k: kw.pop(k) for k in list(kw) if k in TrainConfig.__dataclass_fields__}
    data = DataConfig(**{"token_limit": 16, "batch_size": 8,
                         "categorical_columns": tuple(columns), **data_kw})
    model = ModelConfig(embedding_dim=16, attention_heads=2, nucleotide_layers=1, asv_layers=1,
                        sample_layers=1, ff_mult=2, dropout=0.0)
    train = TrainConfig(**{"epochs": epochs, "lr": 3e-3, "device": "cpu", "seed": 0,
                           "warmup_fraction": 0.0, **train_kw})
    fusion_cfg = FusionConfig(name=fusion, cross_attn_heads=2, perceiver_num_latents=4,
                              perceiver_num_layers=1, **fusion_kw)
    target = "target" if task == "regression" else "category"
    return FinetuneConfig(data=data, model=model, fusion=fusion_cfg, train=train, task=task,
                          target_column=target, **kw)


def prepare_both_tasks(root: Path) -> Path:
    """12 simulated samples x 16 ASVs in ``root``, prepared for regression (target; categories
    category, batch) and classification (category; category batch); returns ``root``."""
    sim = root / "sim"
    assert aam_main(["simulate", "--output-dir", str(sim), "--samples", "12", "--asvs", "16",
                     "--seq-length", "100", "--subjects", "3"]) == 0
    for task, column, cats in (("regression", "target", "category,batch"),
                               ("classification", "category", "batch")):
        assert aam_main(["prepare", "--table", str(sim / "table.biom"), "--metadata",
                         str(sim / "metadata.tsv"), "--metadata-column", column, "--task", task,
                         "--categorical-columns", cats, "--output-dir",
                         str(root / f"prepared-{task}")]) == 0
    return root


def lazy_trainer(root: Path, runs: dict):
    """``get(name) -> (prepared dir, run dir)``: trains ``runs[name] = (task, cfg kwargs)`` for
    one epoch (token limit 8, batch 16) on first use, from seed 0."""
    import torch

    from aam.training.finetune import FinetunePaths, run_finetune

    done: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in done:
            task, kw = runs[name]
            cfg = tiny_finetune_cfg(epochs=1, token_limit=8, batch_size=16, **kw)
            prepared, out = root / f"prepared-{task}", root / "runs" / name
            torch.manual_seed(0)
            run_finetune(cfg, FinetunePaths(prepared, out))
            done[name] = (prepared, out)
        return done[name]

    return get
