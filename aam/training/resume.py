"""Resuming a run, one rule for ``aam pretrain`` and ``aam train``.

A checkpoint carries its run's resolved config. On resume that config is the base:

- settings the user did not give never change it;
- training-schedule settings the user gives (:data:`SCHEDULE`, the fields declared with
  ``schedule=True``: learning rates, epochs, patience, passes, workers, ...) override it;
  each change is logged once, e.g. ``lr 0.0005 (checkpoint) -> 0.0001 (--lr)``, and lands
  in ``config.resolved.yaml``;
- every other setting defines the model or the data (sizes, task, target column, categorical
  columns, fusion, target transform, normalize-by, sampling, seed, ...): a value that differs
  from the checkpoint's stops the run with one line naming both values, before anything is
  written;
- where the run executes (:data:`RUNTIME`, the fields declared with ``runtime=True``: device,
  parallel strategy, time limit) is never inherited;
- values derived from the data (:data:`DERIVED`: sequence length, class count, category
  cardinalities) come from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from aam.config import (DERIVED, RUNTIME, SCHEDULE, flag_of, flatten, from_dict, merge, nest,
                        to_dict)
from aam.errors import InputError

if TYPE_CHECKING:
    from aam.training.checkpoint import Checkpoint

log = logging.getLogger(__name__)


def checkpoint_config(cls, checkpoint: Checkpoint, path: Path):
    """The checkpoint's resolved config as ``cls``, runtime settings back at their defaults."""
    config = checkpoint.config
    sections = [f.name for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.type)
                or f.name in ("data", "model", "train", "fusion")]
    empty = [name for name in sections if not config.get(name)]
    if empty:
        raise InputError(f"{path} holds a config this aam cannot resume (its "
                         f"{', '.join(repr(n) for n in empty)} section is missing or empty). "
                         "Resume from a checkpoint written by aam, or start a new run.")
    saved = flatten(config)
    saved = {k: v for k, v in saved.items() if k not in RUNTIME}
    try:
        return from_dict(cls, nest(saved))
    except InputError as err:
        raise InputError(f"{path} holds a config this aam cannot resume ({err})") from None


def resumed_config(cls, checkpoint: Checkpoint, path: Path, given: dict,
                   sources: Optional[dict[str, str]] = None):
    """``cls`` from the checkpoint's config with the user's ``given`` settings applied.

    Parameters
    ----------
    cls : PretrainConfig or FinetuneConfig
    checkpoint : Checkpoint
        The checkpoint (``load_checkpoint``).
    path : path
        Where it came from (named in messages).
    given : dict
        Nested settings the user gave (flags and ``--config`` keys), nothing else.
    sources : dict, optional
        Dotted field -> where it was given (e.g. ``--lr``), for the log line.

    Raises
    ------
    InputError
        A given model- or data-defining setting differs from the checkpoint's.
    """
    base = checkpoint_config(cls, checkpoint, path)
    cfg = merge(base, given)
    check_resume(cfg, checkpoint, path, sources, log_changes=False)  # the run logs them, once
    return cfg


def check_resume(cfg, checkpoint: Checkpoint, path: Path, sources: Optional[dict[str, str]] = None,
                 log_changes: bool = True) -> None:
    """Refuse model/data settings that differ from the checkpoint's; log schedule changes once.

    Derived values (sequence length, classes, cardinalities) are not compared: they come from
    the checkpoint (:func:`adopt_derived`).
    """
    sources = sources or {}
    saved = flatten(checkpoint.config)
    current = flatten(to_dict(cfg))
    changes = []
    for key in sorted(current):
        if key in RUNTIME or key in DERIVED or key not in saved:
            continue
        old, new = _plain(saved[key]), _plain(current[key])
        if old == new:
            continue
        flag = sources.get(key, flag_of(key))
        if key in SCHEDULE:
            changes.append(f"{key.split('.')[-1]} {_show(old)} (checkpoint) -> {_show(new)} "
                           f"({flag})")
            continue
        given = f"{key} {_show(new)} (--config)" if flag == "--config" else f"{flag} {_show(new)}"
        raise InputError(
            f"{given} differs from {_show(old)} in the checkpoint {path}: a resumed "
            "run keeps its model and data settings. Drop the flag (the checkpoint's value is "
            "used) or start a new run without --resume-from."
        )
    if changes and log_changes:
        log.info("resume %s with changed schedule: %s", path, "; ".join(changes))
    if checkpoint.optimizer_state is None:
        raise InputError(f"{path} has no optimizer state; resume from checkpoints/last.pt.")


def adopt_derived(cfg, checkpoint: Checkpoint):
    """``cfg`` with the data-derived values of the checkpoint (sequence length, classes, ...)."""
    saved = flatten(checkpoint.config)
    derived = {k: v for k, v in saved.items() if k in DERIVED and _has(cfg, k)}
    return merge(cfg, nest(derived)) if derived else cfg


def _has(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return False
        node = getattr(node, part)
    return True


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "''"
    if value is None or value == "":
        return "''" if value == "" else "none"
    return str(value)


__all__ = ["SCHEDULE", "RUNTIME", "DERIVED", "resumed_config", "check_resume", "adopt_derived",
           "checkpoint_config"]


def check_optimizer_state(model, optimizer, state: dict, path) -> None:
    """Refuse an optimizer state that does not fit ``optimizer`` (a crafted or damaged
    checkpoint would otherwise load silently or fail deep inside torch).

    ``state`` is the full state dict the checkpoints hold: ``param_groups`` (each naming its
    parameters) and ``state`` by parameter name (``step``, ``exp_avg``, ``exp_avg_sq``).

    Raises
    ------
    InputError
        Naming the first thing that does not fit.
    """
    import math

    import torch

    def bad(what: str) -> InputError:
        return InputError(f"--resume-from {path}: its optimizer state does not fit this model "
                          f"({what}). Resume from a checkpoint written by this run's aam train or "
                          "aam pretrain, or start a new run.")

    params = dict(model.named_parameters())
    groups = state.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise bad(f"{len(groups) if isinstance(groups, list) else 'no'} parameter groups, "
                  f"the model's optimizer has {len(optimizer.param_groups)}")
    for i, group in enumerate(groups):
        names = group.get("params") if isinstance(group, dict) else None
        if not isinstance(names, list) or not all(n in params for n in names):
            raise bad(f"parameter group {i} names parameters the model does not have")
        for key in ("lr", "eps", "weight_decay"):
            value = group.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value < 0:
                raise bad(f"parameter group {i}: {key} {str(value)[:20]!r} is not a number >= 0")
    entries = state.get("state")
    if not isinstance(entries, dict):
        raise bad("no per-parameter state")
    for name, entry in entries.items():
        if name not in params or not isinstance(entry, dict):
            raise bad(f"state for {str(name)[:60]!r}, which the model does not have")
        for key in ("exp_avg", "exp_avg_sq"):
            value = entry.get(key)
            if not isinstance(value, torch.Tensor) or value.shape != params[name].shape:
                raise bad(f"{key} of {name} is not a tensor of shape "
                          f"{tuple(params[name].shape)}")
            if not bool(torch.isfinite(value).all()) or (key == "exp_avg_sq" and
                                                         bool((value < 0).any())):
                raise bad(f"{key} of {name} holds non-finite or negative values")
        step = entry.get("step")
        step = float(step) if isinstance(step, torch.Tensor) and step.numel() == 1 else step
        if isinstance(step, bool) or not isinstance(step, (int, float)) or \
                not math.isfinite(step) or step < 0:
            raise bad(f"step of {name} is not a whole number >= 0")

