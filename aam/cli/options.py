"""Every command's flags come from its config class's fields (:mod:`aam.settings`).

:func:`options_of` turns each setting of a config class into an :class:`Option` (flag, the dotted
field(s) it sets, type, help, choices); a command adds them to its parser (:func:`add_options`)
and turns the parsed flags into its typed config (:func:`build_config`, or
:func:`build_training_config` for ``aam pretrain`` / ``aam train``): defaults < ``--config
YAML`` < flags given on the command line. A new config field is therefore a new flag of every
command whose config holds it, with no edit here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from aam.config import (FinetuneConfig, PretrainConfig, deep_update, flatten, from_dict,
                        load_yaml, merge, nest)
from aam.settings import settings_of


@dataclass(frozen=True)
class Option:
    """A flag and the config field(s) it sets (``"section.field"`` or a top-level ``"field"``)."""

    flag: str
    fields: tuple[str, ...]
    type: Callable = str
    help: str = ""
    choices: Sequence[str] | None = None
    default: Any = None  # shown in the help
    required: bool = False
    runtime: bool = False
    parse: Callable | None = None  # turns the flag's text into the value, in build_config

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def options_of(cls, command: str | None = None, skip: Sequence[str] = (),
               flag_prefix: str = "") -> list[Option]:
    """One :class:`Option` per setting of ``cls`` that ``command`` takes
    (:func:`aam.settings.settings_of`) whose dotted name is not in ``skip``; ``flag_prefix``
    goes after the dashes (``--permutation-seed`` for ``seed`` with ``permutation-``).
    Shorthands come first, so a more specific flag given with them wins
    (``--attention-layers 2 --asv-layers 4``)."""
    rows = []
    for s in settings_of(cls, command):
        if s.name in skip:
            continue
        flag = "--" + flag_prefix + s.flag[2:]
        help_ = s.help + (f" (unit: {s.unit})" if s.unit else "")
        rows.append(Option(flag, s.fields, str if s.parse else s.type, help_, s.choices,
                           None if s.required else s.default, s.required, s.runtime, s.parse))
    return sorted(rows, key=lambda o: len(o.fields) == 1)


PRETRAIN_OPTIONS = options_of(PretrainConfig, "pretrain")
FINETUNE_OPTIONS = options_of(FinetuneConfig, "train")


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option],
                title: str = "settings (override --config)",
                description: str | None = None) -> None:
    """Add one flag per option; help shows the default. A flag not given parses to None, so
    the config's own default applies (and a resumed run keeps its checkpoint's value)."""
    group = parser.add_argument_group(title, description)
    for o in options:
        shown = "" if o.required or "default" in o.help else f" (default: {_shown(o.default)})"
        text = f"{o.help}{shown}".replace("%", "%%") if o.help else None
        if o.type is bool:
            group.add_argument(o.flag, dest=o.dest, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        else:
            group.add_argument(o.flag, dest=o.dest, type=o.type, default=None, help=text,
                               choices=o.choices, metavar=o.dest.upper(), required=o.required)


def _shown(value: Any) -> Any:
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return "none" if value in ("", None) else value


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


def add_training_flags(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """The settings of ``aam pretrain`` or ``aam train``; where the run executes
    (``--device``, ``--parallel``, ``--stop-after-minutes``) in a group of its own."""
    add_options(parser, [o for o in options if not o.runtime])
    add_options(parser, [o for o in options if o.runtime], RUNTIME_TITLE, RUNTIME_HELP)


RUNTIME_TITLE = "where the run executes (multi-GPU: batch size is per process)"
RUNTIME_HELP = (
    "Run under 'torchrun --standalone --nproc_per_node=N -m aam.cli <command> ...' to train "
    "with N processes (DDP by default: nccl on CUDA, gloo on CPU; one GPU per process). "
    "--batch-size is per process: the global batch is batch size x N, and distance pairs are "
    "formed within each process's batch. Rank 0 alone writes files. With --parallel dp, one "
    "process splits its --batch-size samples over every visible GPU.")


def build_training_config(cls, args: argparse.Namespace, options: Sequence[Option],
                          config_path: str | None = None, inferred: dict | None = None):
    """The run's config: defaults < ``inferred`` < ``--config`` YAML < flags given; or, with
    ``--resume-from``, the checkpoint's config < the settings given (``aam.training.resume``).

    ``inferred`` holds defaults read from the data (e.g. prepare.json's target column); a resumed
    run ignores them.
    """
    given, sources = given_settings(cls, args, options, config_path)
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
        given = load_yaml_dict(cls, config_path)
        sources = {key: "--config" for key in flatten(given)}
    flags = overrides_from_args(args, options)
    for o in options:
        if getattr(args, o.dest, None) is not None:
            sources.update({path: o.flag for path in o.fields})
    deep_update(given, flags)
    return given, sources


def overrides_from_args(args: argparse.Namespace, options: Sequence[Option]) -> dict:
    """Nested dict of the flags that were given (later rows win over earlier ones)."""
    given = {}
    for o in options:
        value = getattr(args, o.dest, None)
        if value is not None:
            given.update({path: o.parse(value) if o.parse else value for path in o.fields})
    return nest(given)


def build_config(cls, args: argparse.Namespace, options: Sequence[Option],
                 config_path: str | None = None, **values: Any):
    """``cls`` defaults, then the YAML file, then the given flags, then ``values`` (paths the
    entry point passes itself); validated by ``cls``."""
    base = flatten(load_yaml_dict(cls, config_path)) if config_path else {}
    base.update(flatten(overrides_from_args(args, options)))
    return from_dict(cls, {**nest(base), **values})


def load_yaml_dict(cls, config_path: str) -> dict:
    """The ``--config`` YAML as a nested dict, checked as a whole by ``cls`` first."""
    import yaml

    load_yaml(cls, config_path)
    return yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
