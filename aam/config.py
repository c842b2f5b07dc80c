"""Typed configuration: one frozen dataclass per component, nested into stage configs.

Every stage config round-trips through plain dicts (``to_dict``/``from_dict``) and YAML, is stored
in every checkpoint, and checks its cross-field rules in ``__post_init__`` before data is read.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from typing import Optional

from aam.data.target_transforms import TRANSFORMS
from aam.errors import InputError
from aam.fusion_names import check_fusion_name
from aam.validate import check_finite, check_model_sizes, check_seed

ASV_SAMPLING = ("first", "abundance", "random")
TARGET_TRANSFORMS = tuple(TRANSFORMS)  # the one registry: aam.data.target_transforms
# How an ASV's count enters the sample encoder (aam.models.encoder.FEATURE_PARTS; a test keeps
# the two equal without importing torch here).
COUNT_FEATURES = ("clr", "log1p", "log1p-clr", "log1p-cpm")
TASKS = ("regression", "classification")
HEAD_INITS = ("fit", "zero")
HEAD_FEATURES = ("fourier", "mlp")
REGRESSION_LOSSES = ("mse", "mae", "huber")
PARALLEL_CHOICES = ("auto", "none", "ddp", "fsdp", "dp")


# DERIVED (values derived from the data: no flag, never compared on resume) lives with the
# dict conversions that skip them (aam.config_io) and is re-exported here.
# Where and how long a run executes: its own flags (--device, --parallel, --stop-after-minutes);
# a resumed run never inherits them.
RUNTIME = frozenset({"train.device", "train.parallel", "train.stop_after_minutes"})

# Config fields whose command-line flag is not ``--`` + the field name with dashes.
FLAG_NAMES = {"fusion.name": "--categorical-fusion", "target_column": "--metadata-column"}


def flag_of(dotted: str) -> str:
    """The command-line flag of a dotted config field (``train.lr`` -> ``--lr``)."""
    return FLAG_NAMES.get(dotted, "--" + dotted.split(".")[-1].replace("_", "-"))


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def _check_range(name: str, value, high, why: str) -> None:
    """Finite, and at most ``high``: a value a model can train with (``why`` says so)."""
    check_finite(value, name)
    if value > high:
        raise InputError(f"{name} must be at most {high:g}, got {value:g} ({why}).")


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    check_finite(value, name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1" if isinstance(value, int) else "> 0"
        raise InputError(f"{name} must be {bound}, got {value}.")


@dataclass(frozen=True)
class DataConfig:
    """How samples become model inputs."""

    # The recipe's defaults, shared by `aam`, the workflow (its schema defaults are checked
    # against these) and the benchmark's presets (tests/test_recipe_defaults.py).
    token_limit: int = 128  # most ASVs per sample fed to the model
    asv_sampling: str = "abundance"  # first | abundance | random: which ASVs when a sample has more
    max_bp: int = 0  # nucleotides per ASV; 0 = the longest ASV in the prepared table
    batch_size: int = 8
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.2  # used only when no sample lists are given
    target_transform: str = "zscore"  # regression targets only; classes are never transformed
    normalize_by: tuple[str, ...] = ()  # category columns for zscore-category
    categorical_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_positive("token_limit", self.token_limit)
        _check_positive("batch_size", self.batch_size)
        _check_range("token_limit", self.token_limit, 100_000, "ASVs per sample the model "
                     "reads; 16S samples hold hundreds to a few thousand")
        _check_range("batch_size", self.batch_size, 1_000_000, "samples per batch")
        _check_positive("max_bp", self.max_bp, allow_zero=True)
        _check_positive("num_workers", self.num_workers, allow_zero=True)
        _check_choice("asv_sampling", self.asv_sampling, ASV_SAMPLING)
        _check_choice("target_transform", self.target_transform, TARGET_TRANSFORMS)
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be between 0 and 1, got {self.val_fraction}.")
        if self.target_transform == "zscore-category" and not self.normalize_by:
            raise InputError(
                "target_transform zscore-category needs normalize_by (the category columns "
                "whose groups get their own mean and sd); set --normalize-by COL."
            )


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the nucleotide -> ASV -> sample encoder."""

    embedding_dim: int = 64
    attention_heads: int = 4
    nucleotide_layers: int = 2  # transformer layers over the nucleotides of one ASV
    asv_layers: int = 2  # transformer layers across the ASVs of a sample
    sample_layers: int = 1  # transformer layers before pooling the sample embedding
    dropout: float = 0.1
    ff_mult: int = field(default=4, metadata={
        "help": "feed-forward width of every transformer block = this x the embedding dim"})
    max_bp: int = 150  # position-embedding length; set from the data before the model is built
    nucleotide_patch: int = 4  # nucleotides per token of the ASV encoder (1 = one per base)
    gradient_checkpointing: bool = False
    count_features: str = field(default="log1p-clr", metadata={
        "help": "how a count enters the sample encoder (each with the relative abundance): "
                "log1p (log1p(count)), clr (centred log relative abundance), log1p-clr (both), "
                "log1p-cpm (log1p of counts per million); docs/science.md compares them",
        "choices": COUNT_FEATURES})
    asv_norm: bool = field(default=True, metadata={
        "help": "standardise ASV vectors across ASVs (batch norm) before the sample encoder; "
                "without it the vectors of similar 16S sequences are nearly parallel and every "
                "sample looks alike to the target head"})

    def __post_init__(self) -> None:
        _check_choice("count_features", self.count_features, COUNT_FEATURES)
        for name in ("embedding_dim", "attention_heads", "nucleotide_layers", "asv_layers",
                     "ff_mult", "max_bp", "nucleotide_patch"):
            _check_positive(name, getattr(self, name))
        _check_positive("sample_layers", self.sample_layers, allow_zero=True)
        if self.embedding_dim % self.attention_heads:
            raise InputError(
                f"embedding_dim ({self.embedding_dim}) must be divisible by attention_heads "
                f"({self.attention_heads})."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}.")
        check_model_sizes(dataclasses.asdict(self), "the model settings")  # before allocating


@dataclass(frozen=True)
class FusionConfig:
    """How categorical metadata is fused with the sequence representation."""

    name: str = "concat"  # one of aam.fusion_names.FUSION_NAMES
    category_dim: int = 0  # embedding size per categorical column; 0 = embedding_dim
    cross_attn_heads: int = 8
    perceiver_num_latents: int = 16
    perceiver_num_layers: int = 2
    conditional_output_scaling: Optional[str] = None  # column with per-category scale and shift
    cardinalities: tuple[int, ...] = ()  # derived from data: categories per column (+1 reserved)

    def __post_init__(self) -> None:
        check_fusion_name(self.name)
        for name in ("cross_attn_heads", "perceiver_num_latents", "perceiver_num_layers"):
            _check_positive(name, getattr(self, name))
        _check_positive("category_dim", self.category_dim, allow_zero=True)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run control shared by pretraining and fine-tuning."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1  # of all optimiser steps
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    grad_accum_steps: int = 1
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model
    parallel: str = "auto"  # auto | none | ddp | fsdp | dp (--parallel)
    stop_after_minutes: float = 0.0  # stop as on SIGTERM after this long (0 = no limit)

    RENAMED: typing.ClassVar[dict] = {"distributed": "parallel"}  # old config keys still read

    def __post_init__(self) -> None:
        _check_positive("epochs", self.epochs)
        _check_positive("lr", self.lr)
        _check_positive("grad_accum_steps", self.grad_accum_steps)
        _check_positive("patience", self.patience, allow_zero=True)
        _check_positive("grad_clip", self.grad_clip, allow_zero=True)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("stop_after_minutes", self.stop_after_minutes, allow_zero=True)
        _check_range("lr", self.lr, 1.0, "typical values are 1e-4 to 3e-3; training "
                     "diverges well below 1")
        _check_range("weight_decay", self.weight_decay, 1.0, "AdamW's decoupled decay "
                     "shrinks every weight by lr x weight_decay per step; typical values are 0 "
                     "to 0.1")
        _check_range("epochs", self.epochs, 100_000, "choose a number of passes over the data")
        _check_range("grad_accum_steps", self.grad_accum_steps, 10_000, "one optimiser step "
                     "per this many batches")
        check_seed(self.seed, "seed")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise InputError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}.")
        _check_choice("parallel", self.parallel, PARALLEL_CHOICES)
        if self.compile and self.parallel == "dp":
            raise InputError("--compile cannot be combined with --parallel dp (its per-GPU "
                             "model copies are made each step); use torchrun with "
                             "--parallel ddp, or drop --compile.")


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining: UniFrac distances between samples + masked nucleotides."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    nucleotide_mask_rate: float = 0.15
    nucleotide_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.data.batch_size < 2 or self.data.batch_size % 2:
            raise InputError(
                f"batch_size must be even and at least 2 (the UniFrac loss compares every pair "
                f"of samples in a batch), got {self.data.batch_size}."
            )
        if not 0.0 <= self.nucleotide_mask_rate < 1.0:
            raise InputError(
                f"nucleotide_mask_rate must be in [0, 1), got {self.nucleotide_mask_rate}."
            )
        _check_positive("nucleotide_loss_weight", self.nucleotide_loss_weight, allow_zero=True)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning on a sample target, with categorical metadata fused in."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    # fine-tuning runs 20 epochs by default (the workflow's finetune.epochs; with categorical_lr
    # above, benchmarks/results/recipe-sim.md)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    task: str = "regression"
    target_column: str = ""
    loss: str = "mse"  # regression: mse | mae | huber; classification always cross-entropy
    class_weights: bool = False  # inverse-frequency class weights for classification
    out_dim: int = 1  # derived: 1 for regression, number of classes for classification
    freeze_base: bool = False
    count_prediction: bool = True
    count_penalty: float = 0.1  # CLR count-loss weight (1.0 halved validation R2 on the simulator)
    target_layers: int = 1  # transformer layers of the target encoder
    abundance_head: bool = True  # additive per-ASV term, linear in the count features
    abundance_head_init: str = "fit"  # fit: penalised linear fit before fine-tuning | zero
    abundance_head_width: int = 512  # hidden units of the head (0: 4 x embedding dim)
    abundance_head_features: str = "fourier"  # fourier: random Fourier features | mlp: GELU
    # frozen beat snapshot on the simulator (3 seeds, gmu): test R2 over the start +0.042 vs
    # +0.001; live scrambled the start (-0.23). benchmarks/results/sim-fusion.md
    abundance_head_encoder: str = field(default="frozen", metadata={
        "help": "ASV vectors the fitted abundance head reads while fine-tuning trains: frozen "
                "(the sequence encoder, nucleotides to ASV vectors, is not trained), snapshot "
                "(a frozen copy of it taken at the fit and saved with the model; the encoder "
                "trains), live (the trained encoder's: moves the fitted start)",
        "choices": ("frozen", "snapshot", "live")})
    # when the fitted start is the best epoch: refit the head on training + validation samples
    abundance_head_refit: bool = True
    # a fine-tuned epoch replaces the fitted start only when its validation loss is lower by
    # more than this many standard errors of the per-subject difference (0: lowest loss wins)
    selection_se: float = 1.0
    group_by: str = ""  # metadata column of the subject: the head fit's CV keeps subjects whole
    # learning rate of the category embeddings, fusion and output scaling (None: train.lr);
    # 1e-2 with 20 epochs beat train.lr with 10 on the simulator by +0.059 R² [0.041, 0.079]
    # (benchmarks/results/recipe-sim.md), with no clear change from 20 epochs alone
    categorical_lr: Optional[float] = 1e-2
    val_prediction_passes: int = 1
    nucleotide_loss_weight: float = 0.0  # > 0 keeps the masked-nucleotide loss when the base trains
    nucleotide_mask_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("task", self.task, TASKS)
        _check_choice("abundance_head_init", self.abundance_head_init, HEAD_INITS)
        _check_choice("abundance_head_features", self.abundance_head_features, HEAD_FEATURES)
        _check_choice("abundance_head_encoder", self.abundance_head_encoder,
                      ("frozen", "snapshot", "live"))  # aam.models.start.START_ENCODERS
        if self.task == "regression":
            _check_choice("loss", self.loss, REGRESSION_LOSSES)
        _check_positive("val_prediction_passes", self.val_prediction_passes)
        _check_positive("out_dim", self.out_dim)
        _check_positive("target_layers", self.target_layers, allow_zero=True)
        _check_positive("abundance_head_width", self.abundance_head_width, allow_zero=True)
        if self.categorical_lr is not None:
            _check_positive("categorical_lr", self.categorical_lr)
            _check_range("categorical_lr", self.categorical_lr, 1.0, "typical values are "
                         "1e-4 to 1e-2; training diverges well below 1")
        _check_positive("count_penalty", self.count_penalty, allow_zero=True)
        _check_positive("selection_se", self.selection_se, allow_zero=True)
        _check_positive("nucleotide_loss_weight", self.nucleotide_loss_weight, allow_zero=True)
        if not 0.0 <= self.nucleotide_mask_rate < 1.0:
            raise InputError(
                f"nucleotide_mask_rate must be in [0, 1), got {self.nucleotide_mask_rate}.")


# The dict/YAML conversions live in aam.config_io; imported here so ``from aam.config import
# load_yaml`` keeps working.
from aam.config_io import (  # noqa: E402,F401
    DERIVED, settable_fields, flatten, nest, to_dict, from_dict, load_yaml, dump_yaml, merge,
    deep_update)


__all__ = [
    "DataConfig", "ModelConfig", "FusionConfig", "TrainConfig", "PretrainConfig",
    "FinetuneConfig", "DERIVED", "RUNTIME", "flag_of", "settable_fields", "flatten", "nest",
    "deep_update", "to_dict", "from_dict", "load_yaml", "dump_yaml", "merge", "replace",
    "dataclasses",
]
