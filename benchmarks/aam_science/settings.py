"""Studies and size presets of the real-data benchmark."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aam.config import DataConfig, FinetuneConfig


@dataclass(frozen=True)
class Study:
    """One prediction task on one shared dataset (``../shared/data/<folder>``)."""

    name: str
    folder: str
    metadata: str
    target: str
    task: str
    group_by: str = "host_subject_id"
    tree: str | None = None  # file in the folder; None -> beta_metric (tree-free)
    beta_metric: str = "braycurtis"
    min_depth: int = 0
    pretrain_key: str = ""  # studies with the same key share folds and pretrained encoders


STUDIES = {s.name: s for s in (
    Study("sleep-apnea-age", "sleep-apnea", "metadata.tsv", "age", "regression",
          pretrain_key="sleep-apnea"),
    Study("sleep-apnea-exposure", "sleep-apnea", "metadata.tsv", "exposure_type",
          "classification", pretrain_key="sleep-apnea"),
    Study("ibd-2538-ibd", "ibd-2538", "sample-metadata.tsv", "ibd", "classification",
          tree="tree.nwk", beta_metric="unweighted-unifrac", min_depth=1000,
          pretrain_key="ibd-2538"),
)}


@dataclass(frozen=True)
class Preset:
    """Sizes and training settings of one benchmark run (one preset per kind of machine)."""

    embedding_dim: int = 32
    attention_heads: int = 4
    attention_layers: int = 1
    token_limit: int = DataConfig.token_limit  # the recipe's defaults, shared with `aam train`
    batch_size: int = 16
    pretrain_epochs: int = 20
    pretrain_patience: int = 5
    pretrain_lr: float = 1e-3
    finetune_epochs: int = 40
    finetune_patience: int = 10
    finetune_lr: float = 3e-3  # dev (fold 0's training subjects, age): 1e-3 R2 0.165, 3e-3 0.239
    weight_decay: float = 0.01
    dropout: float = 0.1
    abundance_head_refit: bool = FinetuneConfig.abundance_head_refit  # the library defaults
    selection_se: float = FinetuneConfig.selection_se
    freeze_base: bool = False
    # the benchmark's aam row fine-tunes the attention path (aam train's default without
    # categorical columns is the fitted start alone; the ablation run's head-only row is that)
    attention_path: bool = True
    target_transform: str = DataConfig.target_transform
    asv_sampling: str = DataConfig.asv_sampling
    folds: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    inner_val_fraction: float = 0.2
    # seed r validates on inner grouped fold r of the training subjects, so the members of
    # aam-ensemble validate on different subjects and together fit on every one. On fold 0's
    # training subjects (fit only, 3 seeds; CHANGELOG.md) ensemble
    # age R2 0.712 -> 0.705, exposure AUC 0.963 -> 0.976, ibd AUC 0.901 -> 0.926.
    inner_rotation: bool = True
    rf_trees: int = 500
    n_bootstrap: int = 2000
    device: str = "cpu"
    threads: int = 1
    variants: tuple[str, ...] = ("aam", "aam-ensemble", "hybrid-rf", "linear")
    studies: tuple[str, ...] = tuple(STUDIES)
    dev_fold: int | None = None  # recipe development on this outer fold's training subjects
    note: str = ""


PRESETS = {
    "cpu": Preset(note="small CPU sizes (embedding 32, 1 layer per stage, 128 ASVs)"),
    "gpu": Preset(embedding_dim=128, attention_heads=4, attention_layers=4, token_limit=512,
                  batch_size=32, pretrain_epochs=40, pretrain_patience=8, finetune_epochs=40,
                  finetune_patience=10, device="cuda", threads=8,
                  note="GPU sizes (embedding 128, 4 layers per stage, 512 ASVs)"),
    "smoke": Preset(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=16,
                    batch_size=8, pretrain_epochs=1, pretrain_patience=0, finetune_epochs=2,
                    finetune_patience=0, folds=2, seeds=(0,), rf_trees=10, n_bootstrap=20,
                    note="seconds-long smoke test; numbers mean nothing"),
}


def preset(name: str, **overrides) -> Preset:
    """The preset ``name`` with non-None ``overrides`` applied."""
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
