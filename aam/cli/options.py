"""One table maps command-line flags to config fields, so a new knob is one line.

Each :class:`Option` names a flag, the dotted config field(s) it sets, a type and help. A command
adds a list of options to its parser (:func:`add_options`) and turns the parsed flags into a
typed config (:func:`build_config`): defaults < ``--config YAML`` < flags given on the command line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import types
import typing

from aam.config import (ASV_SAMPLING, HEAD_FEATURES, HEAD_INITS, PARALLEL_CHOICES,
                        REGRESSION_LOSSES, RUNTIME, TARGET_TRANSFORMS, TASKS, FinetuneConfig,
                        PretrainConfig, deep_update, flag_of, flatten, load_yaml, merge, nest,
                        settable_fields, to_dict)


@dataclass(frozen=True)
class Option:
    """A flag and the config field(s) it sets (``"section.field"`` or a top-level ``"field"``)."""

    flag: str
    fields: tuple[str, ...]
    type: Callable = str
    help: str = ""
    choices: Sequence[str] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def opt(flag: str, fields: str | tuple[str, ...], type: Callable = str, help: str = "",
        choices: Sequence[str] | None = None) -> Option:
    """Shorthand for one table row."""
    return Option(flag, (fields,) if isinstance(fields, str) else tuple(fields), type, help,
                  choices)


LAYERS = ("model.nucleotide_layers", "model.asv_layers", "model.sample_layers")

# Shared by `aam pretrain` and `aam train`; a more specific flag wins over --attention-layers.
TRAINING_OPTIONS = [
    opt("--epochs", "train.epochs", int, "training epochs"),
    opt("--batch-size", "data.batch_size", int,
        "samples per batch, per process: under torchrun the global batch is batch size x "
        "processes, and UniFrac pairs are formed within each process's batch (pretraining: "
        "even and >= 2, the UniFrac loss compares every pair of samples in a batch)"),
    opt("--lr", "train.lr", float, "peak learning rate of AdamW"),
    opt("--weight-decay", "train.weight_decay", float, "AdamW weight decay"),
    opt("--warmup-fraction", "train.warmup_fraction", float,
        "fraction of all optimiser steps spent on linear warmup before the cosine decay"),
    opt("--grad-clip", "train.grad_clip", float, "max gradient norm (0 disables clipping)"),
    opt("--grad-accum-steps", "train.grad_accum_steps", int,
        "batches whose gradients are summed per optimiser step"),
    opt("--patience", "train.patience", int,
        "stop after this many epochs without a better validation loss (0 = never)"),
    opt("--seed", "train.seed", int, "seed of Python, NumPy, torch, shuffling and masks"),
    opt("--device", "train.device", str, "auto (cuda if available), cpu, cuda or cuda:N"),
    opt("--stop-after-minutes", "train.stop_after_minutes", float,
        "stop cleanly this many minutes after the start, as on SIGTERM: a resumable checkpoint, "
        "exit code 75, and the same command continues (0 = no limit; the workflow sets it from "
        "a job's runtime)"),
    opt("--compile", "train.compile", bool, "torch.compile the model"),
    opt("--bf16", "train.bf16", bool, "bf16 autocast on CUDA (always off on CPU)"),
    opt("--embedding-dim", "model.embedding_dim", int, "model width D"),
    opt("--attention-heads", "model.attention_heads", int, "heads of every attention layer"),
    opt("--attention-layers", LAYERS, int, "sets nucleotide, ASV and sample layer counts at once"),
    opt("--nucleotide-layers", "model.nucleotide_layers", int,
        "transformer layers over the nucleotides of one ASV"),
    opt("--nucleotide-patch", "model.nucleotide_patch", int,
        "bases per token of the ASV encoder (default 4; 1 = one token per base)"),
    opt("--asv-layers", "model.asv_layers", int, "transformer layers across a sample's ASVs"),
    opt("--sample-layers", "model.sample_layers", int,
        "transformer layers before pooling the sample embedding"),
    opt("--dropout", "model.dropout", float, "dropout in every transformer block"),
    opt("--gradient-checkpointing", "model.gradient_checkpointing", bool,
        "recompute activations in the backward pass to save memory"),
    opt("--token-limit", "data.token_limit", int, "most ASVs per sample fed to the model"),
    opt("--max-bp", "data.max_bp", int, "nucleotides per ASV (0 = the longest ASV)"),
    opt("--asv-sampling", "data.asv_sampling", str,
        "which ASVs when a sample has more than --token-limit", ASV_SAMPLING),
    opt("--num-workers", "data.num_workers", int, "DataLoader worker processes"),
    opt("--val-fraction", "data.val_fraction", float,
        "validation share when no sample lists are given (seeded split)"),
]

PRETRAIN_OPTIONS = TRAINING_OPTIONS + [
    opt("--nucleotide-mask-rate", "nucleotide_mask_rate", float,
        "fraction of nucleotides masked for the masked-nucleotide loss (training only)"),
    opt("--nucleotide-loss-weight", "nucleotide_loss_weight", float,
        "weight of the masked-nucleotide loss added to the UniFrac loss"),
]


FINETUNE_OPTIONS = TRAINING_OPTIONS + [
    opt("--metadata-column", "target_column", str,
        "target column (default: the one aam prepare recorded in prepare.json)"),
    opt("--task", "task", str, "regression or classification (default: from prepare.json)",
        TASKS),
    opt("--loss", "loss", str, "regression loss (classification: cross-entropy)",
        REGRESSION_LOSSES),
    opt("--class-weights", "class_weights", bool, "inverse-frequency class weights"),
    opt("--freeze-base", "freeze_base", bool,
        "keep the encoder's weights fixed (eval mode: no dropout, deterministic outputs)"),
    opt("--count-prediction", "count_prediction", bool,
        "count head predicting each ASV's relative abundance (--no-count-prediction: not built)"),
    opt("--count-penalty", "count_penalty", float, "weight of the count loss"),
    opt("--abundance-head", "abundance_head", bool,
        "add a per-ASV term to the prediction: the sum over the sample's ASVs of a(ASV) + "
        "its count features x b(ASV), a linear model over abundances whose coefficients come "
        "from each ASV's sequence (--no-abundance-head: not built)"),
    opt("--abundance-head-init", "abundance_head_init", str,
        "start of the abundance head: fit (a ridge / L2-logistic fit of its last layer on the "
        "training samples before fine-tuning, the penalty chosen as --group-by says) or zero",
        HEAD_INITS),
    opt("--abundance-head-refit", "abundance_head_refit", bool,
        "when the fitted start is the best epoch (chosen on the validation samples), refit "
        "the head on training + validation samples for model.pt, the penalty cross-validated "
        "again; the reported validation metrics stay those of the model selection"),
    opt("--selection-se", "selection_se", float,
        "with a fitted abundance head, a fine-tuned epoch is chosen over the fitted start only "
        "when its validation loss is lower by more than this many standard errors of the "
        "paired per-subject (--group-by, else per-sample) difference; 0: the lowest "
        "validation loss wins"),
    opt("--abundance-head-width", "abundance_head_width", int,
        "hidden units of the abundance head (0: 4 x the embedding dim)"),
    opt("--abundance-head-features", "abundance_head_features", str,
        "hidden layer of the abundance head: fourier (random Fourier features of the ASV "
        "vectors: the fit is kernel ridge over sequences) or mlp (GELU, the format-3 head)",
        HEAD_FEATURES),
    opt("--group-by", "group_by", str,
        "metadata column of the subject (e.g. host_subject_id): the abundance head's fit "
        "chooses its penalty by cross-validation that keeps each subject's samples together "
        "(without it: on the validation samples)"),
    opt("--target-layers", "target_layers", int, "transformer layers of the target encoder"),
    opt("--categorical-columns", "data.categorical_columns", str,
        "comma-separated metadata columns fused into the model (default: prepare.json's)"),
    opt("--categorical-fusion", "fusion.name", str,
        "how categories are fused (aam.models.fusion.FUSIONS); see --categorical-help"),
    opt("--category-dim", "fusion.category_dim", int,
        "embedding size per categorical column (0 = embedding dim)"),
    opt("--cross-attn-heads", "fusion.cross_attn_heads", int,
        "heads of cross-attention/perceiver fusion; must divide the embedding dim"),
    opt("--perceiver-num-latents", "fusion.perceiver_num_latents", int,
        "learned latents of perceiver fusion"),
    opt("--perceiver-num-layers", "fusion.perceiver_num_layers", int,
        "self-attention layers over the perceiver latents"),
    opt("--conditional-output-scaling", "fusion.conditional_output_scaling", str,
        "categorical column with a learned per-category scale and shift of the prediction"),
    opt("--categorical-lr", "categorical_lr", float,
        "learning rate of category embeddings, fusion and output scaling (default 1e-2)"),
    opt("--target-transform", "data.target_transform", str,
        "transform of regression targets, fitted on training samples", TARGET_TRANSFORMS),
    opt("--normalize-by", "data.normalize_by", str,
        "comma-separated columns whose groups get their own mean/sd (zscore-category)"),
    opt("--val-prediction-passes", "val_prediction_passes", int,
        "average this many random ASV draws per validation sample (needs --asv-sampling random)"),
    opt("--nucleotide-loss-weight", "nucleotide_loss_weight", float,
        "keep the masked-nucleotide loss while the encoder trains (0 = off)"),
    opt("--nucleotide-mask-rate", "nucleotide_mask_rate", float,
        "fraction of nucleotides masked for that loss (training only)"),
]

def generated_options(cls, covered: set[str]) -> list[Option]:
    """A flag for every settable field of ``cls`` that no table row names: ``flag_of(field)``,
    the field's type, and ``help``/``choices`` from its ``metadata``. A new config field is
    therefore a new flag of every command whose config holds it, with no other edit."""
    rows = []
    for path, (f, hint) in settable_fields(cls).items():
        if path in covered or path in RUNTIME:
            continue
        rows.append(opt(flag_of(path), path, _flag_type(hint), f.metadata.get("help", ""),
                        f.metadata.get("choices")))
    return rows


def _flag_type(hint) -> Callable:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
    if typing.get_origin(hint) is tuple:
        return str  # comma-separated
    return hint


_COVERED = {f for table in (PRETRAIN_OPTIONS, FINETUNE_OPTIONS) for o in table for f in o.fields}
PRETRAIN_OPTIONS = PRETRAIN_OPTIONS + generated_options(PretrainConfig, _COVERED)
FINETUNE_OPTIONS = FINETUNE_OPTIONS + generated_options(FinetuneConfig, _COVERED)


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option], defaults: Any,
                title: str = "settings (override --config)") -> None:
    """Add one flag per option; help shows the default taken from the config ``defaults``."""
    group = parser.add_argument_group(title)
    flat = flatten(to_dict(defaults))
    for o in options:
        shown = flat.get(o.fields[0])
        text = f"{o.help} (default: {shown})" if o.help else None
        if o.type is bool:
            group.add_argument(o.flag, dest=o.dest, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        else:
            group.add_argument(o.flag, dest=o.dest, type=o.type, default=None, help=text,
                               choices=o.choices, metavar=o.dest.upper())


def add_run_flags(parser: argparse.ArgumentParser, config_name: str, data_help: str) -> None:
    """Inputs and outputs every training command takes (aam pretrain, aam train)."""
    parser.add_argument("--data-dir", required=True, type=Path, help=data_help)
    parser.add_argument("--output-dir", required=True, type=Path, help="folder for the outputs")
    parser.add_argument("--train-samples", type=Path, default=None,
                        help="training sample IDs, one a line (with --val-samples); without "
                             "both, the samples are split with --val-fraction and --seed")
    parser.add_argument("--val-samples", type=Path, default=None,
                        help="validation sample IDs, one a line")
    parser.add_argument("--resume-from", type=Path, default=None,
                        help="continue a run from its checkpoints/last.pt (weights, optimizer, "
                             "schedule, epoch, RNG, target transform): its settings are the "
                             "base; schedule flags given (--lr, --epochs, --patience, ...) "
                             "override them, a differing model or data flag is an error")
    parser.add_argument("--config", default=None,
                        help=f"YAML of {config_name} (data/model/train sections); flags win")


def add_training_flags(parser: argparse.ArgumentParser, options: Sequence[Option],
                       defaults: Any) -> None:
    """The settings table plus the multi-GPU flags, identical in ``aam pretrain`` and ``train``."""
    add_options(parser, options, defaults)
    add_parallel_flags(parser)


def add_parallel_flags(parser: argparse.ArgumentParser) -> None:
    """``--parallel`` (and its old aliases), with the same help, for every training command."""
    group = parser.add_argument_group(
        "multi-GPU (batch size is per process)",
        "Run under 'torchrun --standalone --nproc_per_node=N -m aam.cli <command> ...' to train "
        "with N processes (DDP by default: nccl on CUDA, gloo on CPU; one GPU per process). "
        "--batch-size is per process: the global batch is batch size x N, and UniFrac pairs are "
        "formed within each process's batch. Rank 0 alone writes files. With --parallel dp, one "
        "process splits its --batch-size samples over every visible GPU.")
    group.add_argument("--parallel", choices=PARALLEL_CHOICES, default=None,
                       help="auto (ddp under torchrun, else none); ddp: DistributedDataParallel "
                       "under torchrun; fsdp: FullyShardedDataParallel (FSDP2) under torchrun, "
                       "parameters, gradients and optimizer state sharded, rank 0 saves a full "
                       "state dict; dp: one process drives every visible GPU, the batch split "
                       "by samples (needs CUDA; torchrun with ddp scales better)")
    group.add_argument("--distributed", action="store_true", help="same as --parallel ddp")
    group.add_argument("--fsdp", action="store_true", help="same as --parallel fsdp")
    group.add_argument("--data-parallel", action="store_true", help="same as --parallel dp")


def build_training_config(cls, args: argparse.Namespace, options: Sequence[Option],
                          config_path: str | None = None, inferred: dict | None = None):
    """The run's config: defaults < ``inferred`` < ``--config`` YAML < flags given; or, with
    ``--resume-from``, the checkpoint's config < the settings given (``aam.training.resume``).

    ``inferred`` holds defaults read from the data (e.g. prepare.json's target column); a resumed
    run ignores them. The parallel strategy comes from --parallel (or its old aliases).
    """
    from aam.training.distributed import strategy_from_flags

    strategy = strategy_from_flags(args.distributed, args.fsdp, args.data_parallel,
                                   args.parallel)
    given, sources = given_settings(cls, args, options, config_path)
    if strategy != "auto":
        given.setdefault("train", {})["parallel"] = strategy
    if getattr(args, "resume_from", None) is not None:
        from aam.training.checkpoint import load_checkpoint
        from aam.training.resume import resumed_config

        kind = "encoder" if cls.__name__ == "PretrainConfig" else "predictor"
        payload = load_checkpoint(args.resume_from, kind)
        return resumed_config(cls, payload, args.resume_from, given, sources)
    return merge(merge(cls(), inferred or {}), given)


def given_settings(cls, args: argparse.Namespace, options: Sequence[Option],
                   config_path: str | None = None) -> tuple[dict, dict[str, str]]:
    """The settings the user gave, nested (``--config`` keys, then flags), and for each dotted
    field where it was given (``--lr`` or ``--config``). Flags not given are not in it."""
    given: dict = {}
    sources: dict[str, str] = {}
    if config_path:
        import yaml

        load_yaml(cls, config_path)  # validates the file as a whole
        given = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
        sources = {key: "--config" for key in flatten(given)}
    flags = overrides_from_args(args, options)
    for o in options:
        if getattr(args, o.dest, None) is not None:
            sources.update({path: o.flag for path in o.fields})
    deep_update(given, flags)
    return given, sources


def overrides_from_args(args: argparse.Namespace, options: Sequence[Option]) -> dict:
    """Nested dict of the flags that were given (later rows win over earlier ones)."""
    return nest({path: getattr(args, o.dest) for o in options
                 if getattr(args, o.dest, None) is not None for path in o.fields})


def build_config(cls, args: argparse.Namespace, options: Sequence[Option],
                 config_path: str | None = None):
    """``cls`` defaults, then the YAML file, then the given flags; validated by ``cls``."""
    base = load_yaml(cls, config_path) if config_path else cls()
    return merge(base, overrides_from_args(args, options))
