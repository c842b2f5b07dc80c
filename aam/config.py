"""Typed configuration: one frozen dataclass per component, nested into stage configs.

Every stage config round-trips through plain dicts (``to_dict``/``from_dict``) and YAML, is stored
in every checkpoint, and checks its cross-field rules in ``__post_init__`` before data is read.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Optional

from aam.data.target_transforms import TRANSFORMS
from aam.errors import InputError
from aam.fusion_names import check_fusion_name
from aam.settings import Shorthand, runtime_settings, schedule_settings, setting, settings_of
from aam.validate import (check_at_most, check_choice, check_model_sizes, check_positive,
                          check_seed)

ASV_SAMPLING = ("first", "abundance", "random")
TARGET_TRANSFORMS = tuple(TRANSFORMS)  # the one registry: aam.data.target_transforms
TASKS = ("regression", "classification")
# what the abundance head reads per ASV: random Fourier features of its ASV vector (fourier) or
# identity (one indicator per ASV of the run's samples: no sequence information)
HEAD_FEATURES = ("fourier", "identity")
REGRESSION_LOSSES = ("mse", "mae", "huber")
PARALLEL_CHOICES = ("auto", "none", "ddp", "fsdp", "dp")


# DERIVED (values derived from the data: no flag, never compared on resume) lives with the
# dict conversions that skip them (aam.config_io) and is re-exported here. RUNTIME and SCHEDULE
# (which settings a resumed run may not inherit, and which it may change) are read from the
# fields' metadata below the classes.


@dataclass(frozen=True)
class DataConfig:
    """How samples become model inputs."""

    # The recipe's defaults, shared by `aam`, the workflow and the benchmark's presets
    # (tests/test_recipe_defaults.py).
    token_limit: int = setting(128, "most ASVs per sample fed to the model")
    asv_sampling: str = setting("abundance", "which ASVs when a sample has more than "
                                "--token-limit", choices=ASV_SAMPLING)
    max_bp: int = setting(0, "nucleotides per ASV (0 = the longest ASV)")
    batch_size: int = setting(
        8, "samples per batch, per process: under torchrun the global batch is batch size x "
        "processes, and distance pairs are formed within each process's batch (pretraining: "
        "even and >= 2, the distance loss compares every pair of samples in a batch)",
        schedule=True)
    num_workers: int = setting(0, "DataLoader worker processes", schedule=True)
    val_fraction: float = setting(0.2, "validation share when no sample lists are given "
                                  "(seeded split)")
    target_transform: str = setting("zscore", "transform of regression targets, fitted on "
                                    "training samples (classes are never transformed)",
                                    choices=TARGET_TRANSFORMS, commands=("train",))
    normalize_by: tuple[str, ...] = setting((), "comma-separated columns whose groups get "
                                            "their own mean/sd (zscore-category)",
                                            commands=("train",))
    categorical_columns: tuple[str, ...] = setting(
        (), "comma-separated metadata columns fused into the model (default: prepare.json's)",
        commands=("train",))

    def __post_init__(self) -> None:
        check_positive("token_limit", self.token_limit)
        check_positive("batch_size", self.batch_size)
        check_at_most("token_limit", self.token_limit, 100_000, "ASVs per sample the model "
                     "reads; 16S samples hold hundreds to a few thousand")
        check_at_most("batch_size", self.batch_size, 1_000_000, "samples per batch")
        check_positive("max_bp", self.max_bp, allow_zero=True)
        check_positive("num_workers", self.num_workers, allow_zero=True)
        check_choice("asv_sampling", self.asv_sampling, ASV_SAMPLING)
        check_choice("target_transform", self.target_transform, TARGET_TRANSFORMS)
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

    embedding_dim: int = setting(64, "model width D")
    attention_heads: int = setting(4, "heads of every attention layer")
    nucleotide_layers: int = setting(2, "transformer layers over the nucleotides of one ASV")
    asv_layers: int = setting(2, "transformer layers across a sample's ASVs")
    sample_layers: int = setting(1, "transformer layers before pooling the sample embedding")
    dropout: float = setting(0.1, "dropout in every transformer block")
    ff_mult: int = setting(4, "feed-forward width of every transformer block = this x the "
                           "embedding dim")
    max_bp: int = 150  # position-embedding length; derived from the data (no flag)
    nucleotide_patch: int = setting(4, "bases per token of the ASV encoder (1 = one token per "
                                    "base)")
    gradient_checkpointing: bool = setting(
        False, "recompute activations in the backward pass to save memory", schedule=True)

    # --attention-layers sets the three layer counts at once; a more specific flag wins
    SHORTHANDS: typing.ClassVar[dict] = {"attention_layers": Shorthand(
        ("nucleotide_layers", "asv_layers", "sample_layers"),
        "sets nucleotide, ASV and sample layer counts at once")}

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "attention_heads", "nucleotide_layers", "asv_layers",
                     "ff_mult", "max_bp", "nucleotide_patch"):
            check_positive(name, getattr(self, name))
        check_positive("sample_layers", self.sample_layers, allow_zero=True)
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

    name: str = setting("concat", "how categories are fused (aam.models.fusion.FUSIONS); see "
                        "--categorical-help", flag="--categorical-fusion")
    category_dim: int = setting(0, "embedding size per categorical column (0 = embedding dim)")
    cross_attn_heads: int = setting(8, "heads of cross-attention/perceiver fusion; must divide "
                                    "the embedding dim")
    perceiver_num_latents: int = setting(4, "learned latents of perceiver fusion")
    perceiver_num_layers: int = setting(1, "self-attention layers over the perceiver latents")
    conditional_output_scaling: Optional[str] = setting(
        None, "categorical column with a learned per-category scale and shift of the "
        "prediction")
    cardinalities: tuple[int, ...] = ()  # derived from data: categories per column (+1 reserved)

    def __post_init__(self) -> None:
        check_fusion_name(self.name)
        for name in ("cross_attn_heads", "perceiver_num_latents", "perceiver_num_layers"):
            check_positive(name, getattr(self, name))
        check_positive("category_dim", self.category_dim, allow_zero=True)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run control shared by pretraining and fine-tuning."""

    epochs: int = setting(10, "training epochs", schedule=True)
    lr: float = setting(1e-3, "peak learning rate of AdamW", schedule=True)
    weight_decay: float = setting(0.01, "AdamW weight decay", schedule=True)
    warmup_fraction: float = setting(0.1, "fraction of all optimiser steps spent on linear "
                                     "warmup before the cosine decay", schedule=True)
    grad_clip: float = setting(1.0, "max gradient norm (0 disables clipping)", schedule=True)
    grad_accum_steps: int = setting(1, "batches whose gradients are summed per optimiser step",
                                    schedule=True)
    patience: int = setting(0, "stop after this many epochs without a better validation loss "
                            "(0 = never)", unit="epochs", schedule=True)
    seed: int = setting(42, "seed of Python, NumPy, torch, shuffling and masks")
    device: str = setting("auto", "auto (cuda if available), cpu, cuda or cuda:N", runtime=True)
    bf16: bool = setting(True, "bf16 autocast on CUDA (always off on CPU)", schedule=True)
    compile: bool = setting(False, "torch.compile the model", schedule=True)
    parallel: str = setting(
        "auto", "auto (ddp under torchrun, else none); ddp: DistributedDataParallel under "
        "torchrun; fsdp: FullyShardedDataParallel (FSDP2) under torchrun, parameters, gradients "
        "and optimizer state sharded, rank 0 saves a full state dict; dp: one process drives "
        "every visible GPU, the batch split by samples (needs CUDA; torchrun with ddp scales "
        "better)", choices=PARALLEL_CHOICES, runtime=True)
    stop_after_minutes: float = setting(
        0.0, "stop cleanly this long after the start, as on SIGTERM: a resumable checkpoint, "
        "exit code 75, and the same command continues (0 = no limit; the workflow sets it from "
        "a job's runtime)", unit="minutes", runtime=True)

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs)
        check_positive("lr", self.lr)
        check_positive("grad_accum_steps", self.grad_accum_steps)
        check_positive("patience", self.patience, allow_zero=True)
        check_positive("grad_clip", self.grad_clip, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("stop_after_minutes", self.stop_after_minutes, allow_zero=True)
        check_at_most("lr", self.lr, 1.0, "typical values are 1e-4 to 3e-3; training "
                     "diverges well below 1")
        check_at_most("weight_decay", self.weight_decay, 1.0, "AdamW's decoupled decay "
                     "shrinks every weight by lr x weight_decay per step; typical values are 0 "
                     "to 0.1")
        check_at_most("epochs", self.epochs, 100_000, "choose a number of passes over the data")
        check_at_most("grad_accum_steps", self.grad_accum_steps, 10_000, "one optimiser step "
                     "per this many batches")
        check_seed(self.seed, "seed")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise InputError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}.")
        check_choice("parallel", self.parallel, PARALLEL_CHOICES)
        if self.compile and self.parallel == "dp":
            raise InputError("--compile cannot be combined with --parallel dp (its per-GPU "
                             "model copies are made each step); use torchrun with "
                             "--parallel ddp, or drop --compile.")


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining: distances between samples + masked nucleotides."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    nucleotide_mask_rate: float = setting(0.15, "fraction of nucleotides masked for the "
                                          "masked-nucleotide loss (training only)")
    nucleotide_loss_weight: float = setting(1.0, "weight of the masked-nucleotide loss added "
                                            "to the distance loss")

    def __post_init__(self) -> None:
        if self.data.batch_size < 2 or self.data.batch_size % 2:
            raise InputError(
                f"batch_size must be even and at least 2 (the distance loss compares every pair "
                f"of samples in a batch), got {self.data.batch_size}."
            )
        if not 0.0 <= self.nucleotide_mask_rate < 1.0:
            raise InputError(
                f"nucleotide_mask_rate must be in [0, 1), got {self.nucleotide_mask_rate}."
            )
        check_positive("nucleotide_loss_weight", self.nucleotide_loss_weight, allow_zero=True)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning on a sample target, with categorical metadata fused in."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    # fine-tuning runs 20 epochs by default (the workflow's finetune.epochs; with categorical_lr
    # above, benchmarks/results/recipe-sim.md)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    task: str = setting("regression", "regression or classification (default: from "
                        "prepare.json)", choices=TASKS)
    target_column: str = setting("", "target column (default: the one aam prepare recorded in "
                                 "prepare.json)", flag="--metadata-column")
    loss: str = setting("mse", "regression loss (classification: cross-entropy)",
                        choices=REGRESSION_LOSSES)
    class_weights: bool = setting(False, "inverse-frequency class weights (classification)")
    out_dim: int = 1  # derived: 1 for regression, number of classes for classification
    freeze_base: bool = setting(False, "keep the encoder's weights fixed (eval mode: no dropout, "
                                "deterministic outputs)")
    count_prediction: bool = setting(True, "count head predicting each ASV's relative abundance "
                                     "(--no-count-prediction: not built)")
    # 1.0 halved validation R2 on the simulator
    count_penalty: float = setting(0.1, "weight of the count loss")
    target_layers: int = setting(1, "transformer layers of the target encoder")
    # Unset: the path only where it adds something measured. With a category that interacts
    # with the microbes it beats the head by +0.022 to +0.058 R² (benchmarks/results/
    # fusions-sim.md); without categorical columns it adds nothing clear on the simulator
    # (the head alone +0.001 [-0.010, 0.012] over it, 3 seeds) or on sleep-apnea and ibd-2538
    # (benchmarks/results/science-ablations-cpu.md), so the simpler fitted start ships there.
    attention_path: Optional[bool] = setting(
        None, "build the attention / fusion path (target encoder, fusion, target head) that "
        "fine-tuning trains as a residual of the fitted start; --no-attention-path: the model "
        "is the fitted start alone (abundance head + category main effects + intercept), "
        "refitted on training + validation samples as a kept start is, and no epoch runs; "
        "unset: on when categorical columns are fused, off without them (docs/science.md)")
    abundance_head_width: int = setting(512, "hidden units (random Fourier features) of the "
                                        "abundance head")
    abundance_head_features: str = setting(
        "fourier", "what the abundance head reads per ASV (the head adds the sum over a "
        "sample's ASVs of a(ASV) + its count features x b(ASV), its last layer fitted by ridge / "
        "L2-logistic regression on the training samples before fine-tuning, the penalty chosen "
        "as --group-by says): fourier (random Fourier features of the ASV vectors: the fit is "
        "kernel ridge over sequences), identity (one indicator per "
        "ASV of the training and validation samples, no sequence information: the fit is a "
        "ridge over per-ASV presence and counts; an ASV unseen there gets no term of its own)",
        choices=HEAD_FEATURES)
    # frozen beat snapshot on the simulator (3 seeds, gmu): test R2 over the start +0.042 vs
    # +0.001; live scrambled the start (-0.23). benchmarks/results/sim-fusion.md
    abundance_head_encoder: str = setting(
        "frozen", "ASV vectors the fitted abundance head reads while fine-tuning trains: frozen "
        "(the sequence encoder, nucleotides to ASV vectors, is not trained), snapshot (a frozen "
        "copy of it taken at the fit and saved with the model; the encoder trains), live (the "
        "trained encoder's: moves the fitted start)", choices=("frozen", "snapshot", "live"))
    abundance_head_refit: bool = setting(
        True, "when the fitted start is the best epoch (chosen on the validation samples), "
        "refit the head on training + validation samples for model.pt, the penalty "
        "cross-validated again; the reported validation metrics stay those of the model "
        "selection", schedule=True)  # what model.pt is after selection, not the trained model
    selection_se: float = setting(
        1.0, "a fine-tuned epoch is chosen over the fitted start only when its validation "
        "loss is lower by more than this many standard errors of the paired per-subject "
        "(--group-by, else per-sample) difference; 0: the lowest validation loss wins")
    selection_folds: int = setting(
        0, "choose between the fitted start and fine-tuning on this many inner folds of "
        "subjects (--group-by) of the training + validation samples instead of the one "
        "validation split: each fold's out-of-fold loss per epoch, pooled over every subject, "
        "picks the epoch (with the --selection-se margin), and the final model trains on all "
        "given samples; costs K + 1 trainings, not resumable (0 or 1: the one split)")
    group_by: str = setting(
        "", "metadata column of the subject (e.g. host_subject_id): the abundance head's fit "
        "chooses its penalty by cross-validation that keeps each subject's samples together "
        "(without it: on the validation samples)")
    # 1e-2 with 20 epochs beat train.lr with 10 on the simulator by +0.059 R² [0.041, 0.079]
    # (benchmarks/results/recipe-sim.md), with no clear change from 20 epochs alone
    categorical_lr: Optional[float] = setting(
        1e-2, "learning rate of category embeddings, fusion and output scaling (unset: --lr)",
        schedule=True)
    val_prediction_passes: int = setting(
        1, "average this many random ASV draws per validation sample (needs --asv-sampling "
        "random)", schedule=True)
    nucleotide_loss_weight: float = setting(0.0, "keep the masked-nucleotide loss while the "
                                            "encoder trains (0 = off)")
    nucleotide_mask_rate: float = setting(0.0, "fraction of nucleotides masked for that loss "
                                          "(training only)")

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("abundance_head_features", self.abundance_head_features, HEAD_FEATURES)
        check_choice("abundance_head_encoder", self.abundance_head_encoder,
                      ("frozen", "snapshot", "live"))  # aam.models.start.START_ENCODERS
        if self.task == "regression":
            check_choice("loss", self.loss, REGRESSION_LOSSES)
        check_positive("val_prediction_passes", self.val_prediction_passes)
        check_positive("out_dim", self.out_dim)
        check_positive("target_layers", self.target_layers, allow_zero=True)
        check_positive("abundance_head_width", self.abundance_head_width)
        if not self.builds_attention_path:
            self._check_head_only()
        if self.categorical_lr is not None:
            check_positive("categorical_lr", self.categorical_lr)
            check_at_most("categorical_lr", self.categorical_lr, 1.0, "typical values are "
                         "1e-4 to 1e-2; training diverges well below 1")
        check_positive("count_penalty", self.count_penalty, allow_zero=True)
        check_positive("selection_se", self.selection_se, allow_zero=True)
        check_positive("selection_folds", self.selection_folds, allow_zero=True)
        check_positive("nucleotide_loss_weight", self.nucleotide_loss_weight, allow_zero=True)
        if not 0.0 <= self.nucleotide_mask_rate < 1.0:
            raise InputError(
                f"nucleotide_mask_rate must be in [0, 1), got {self.nucleotide_mask_rate}.")

    @property
    def builds_attention_path(self) -> bool:
        """``attention_path`` when given; unset, whether categorical columns are fused."""
        if self.attention_path is not None:
            return self.attention_path
        return bool(self.data.categorical_columns)

    def _check_head_only(self) -> None:
        """Without the attention path nothing trains: the fitted start must be the model."""
        if self.fusion.conditional_output_scaling:
            raise InputError("--conditional-output-scaling is trained by fine-tuning, which "
                             "a model without the attention path does not run; drop one of "
                             "the two.")
        if self.selection_folds >= 2:
            raise InputError("--selection-folds chooses between the fitted start and "
                             "fine-tuning, and this model has no attention path to fine-tune "
                             "(--no-attention-path, or no categorical columns: give "
                             "--attention-path to fine-tune one); drop --selection-folds or "
                             "build the path.")


# Where and how long a run executes (--device, --parallel, --stop-after-minutes): a resumed run
# never inherits them. Training-schedule settings a resumed run may change (--lr, --epochs, ...).
RUNTIME = runtime_settings(PretrainConfig, FinetuneConfig)
SCHEDULE = schedule_settings(PretrainConfig, FinetuneConfig)


@cache
def _flags() -> dict[str, str]:
    return {s.name: s.flag for cls in (PretrainConfig, FinetuneConfig) for s in settings_of(cls)}


def flag_of(dotted: str) -> str:
    """The command-line flag of a dotted config field (``train.lr`` -> ``--lr``)."""
    return _flags().get(dotted, "--" + dotted.split(".")[-1].replace("_", "-"))


# The dict/YAML conversions live in aam.config_io; imported here so ``from aam.config import
# load_yaml`` keeps working.
from aam.config_io import (  # noqa: E402,F401
    DERIVED, settable_fields, flatten, nest, to_dict, from_dict, load_yaml, dump_yaml, merge,
    deep_update)


__all__ = [
    "DataConfig", "ModelConfig", "FusionConfig", "TrainConfig", "PretrainConfig",
    "FinetuneConfig", "DERIVED", "RUNTIME", "SCHEDULE", "flag_of", "settable_fields", "flatten",
    "nest",
    "deep_update", "to_dict", "from_dict", "load_yaml", "dump_yaml", "merge", "replace",
    "dataclasses",
]
