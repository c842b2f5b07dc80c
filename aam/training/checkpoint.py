"""Checkpoints: one typed :class:`Checkpoint` (a :class:`PredictorState` for the predictor kind),
written atomically as a ``torch.save`` dict of plain values, read back and checked field by field.

Files load with ``torch.load(weights_only=True)``: only tensors and plain Python values inside,
so a crafted file cannot run code when it is opened. This aam reads formats
``OLDEST_FORMAT``-``FORMAT_VERSION``; an older file fails with one line naming the aam that
reads it.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from aam import __version__
from aam.atomic import atomic_path
from aam.data.sample_ids import short_id
from aam.errors import InputError
from aam.training.checkpoint_formats import (LAST_READER, OLDEST_FORMAT, upgrade,
                                             without_removed)
from aam.validate import MAX_CHECKPOINT_ELEMENTS, SEED_MAX, check_model_sizes

FORMAT_VERSION = 6  # 6: the pretraining head is ``distance_head`` (its log key distance_loss)
KINDS = ("encoder", "predictor")


def _bad(source: str, name: str, what: str, value: Any) -> InputError:
    return InputError(f"{source}: checkpoint field {name!r} must be {what}, got "
                      f"{str(value)[:40]!r}. Use a checkpoint written by aam.")


def _count(source: str, name: str, value: Any, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise _bad(source, name, "a whole number >= 0", value)
    return value


def _mapping(source: str, name: str, value: Any, optional: bool = True) -> dict | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise _bad(source, name, "a mapping" + (" or null" if optional else ""), value)
    return value


@dataclass
class PredictorState:
    """What a predictor checkpoint holds beside its weights: everything ``aam predict`` needs.

    Attributes
    ----------
    task : str                              "regression" or "classification"
    target_column : str
    target_transform : dict or None         fitted on the training samples (plain numbers)
    categorical_vocab : dict                column -> {category: index}
    classes : list[str] or None             class labels (classification)
    selection_reference : dict[str, float]  the fitted start's per-subject validation losses
        (the run fills the same dict at epoch 0, so every later checkpoint carries it)
    """

    task: str = ""
    target_column: str = ""
    target_transform: dict | None = None
    categorical_vocab: dict[str, dict[str, int]] = field(default_factory=dict)
    classes: list[str] | None = None
    selection_reference: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: dict, source: str) -> "PredictorState":
        """Read and check the predictor fields of a checkpoint dict."""
        vocab = payload.get("categorical_vocab") or {}
        if not isinstance(vocab, dict) or not all(
                isinstance(v, dict) and all(isinstance(i, int) and not isinstance(i, bool)
                                            for i in v.values()) for v in vocab.values()):
            raise _bad(source, "categorical_vocab", "a mapping of column to {category: index}",
                       vocab)
        transform = _mapping(source, "target_transform", payload.get("target_transform"))
        if transform is not None:
            from aam.data.target_transforms import transform_from_dict

            try:
                transform_from_dict(transform)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                raise _bad(source, "target_transform", "a fitted target transform",
                           transform) from None
        classes = payload.get("classes")
        if classes is not None and not (isinstance(classes, (list, tuple))
                                        and all(isinstance(c, str) for c in classes)):
            raise _bad(source, "classes", "a list of class labels or null", classes)
        reference = _mapping(source, "selection_reference",
                             payload.get("selection_reference")) or {}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in reference.values()):
            raise _bad(source, "selection_reference", "a mapping of subject to loss", reference)
        task, column = payload.get("task", ""), payload.get("target_column", "")
        for name, value in (("task", task), ("target_column", column)):
            if not isinstance(value, str):
                raise _bad(source, name, "a string", value)
        return cls(task, column, transform, vocab,
                   None if classes is None else list(classes), reference)


@dataclass
class Checkpoint:
    """A training checkpoint of either kind: weights, config and the state a resume needs.

    Attributes
    ----------
    kind : {"encoder", "predictor"}      ``aam pretrain`` writes encoders, ``aam train`` predictors
    config : dict                        ``aam.config.to_dict`` of the run's resolved config
    model_state : dict[str, Tensor]      ``state_dict()`` of the unwrapped model
    optimizer_state, scheduler_state : dict or None   resumable checkpoints (``last.pt``)
    epoch : int                          epochs completed
    best_metric : float or None          best selection loss so far
    best_epoch : int or None
    global_step : int                    optimizer steps taken
    seed : int
    rng_state : dict or None             torch / numpy / python generator states
    resume_batch, partial_samples, partial_sums : where inside the next epoch a preempted run
        stopped, and that epoch's running sums (0 and empty at an epoch's end)
    preempted : bool                     written on a stop signal: the same command continues
    provenance : dict or None            fingerprints of the data the run read
    predictor : PredictorState or None   the predictor kind's own state
    source : str                         where it was read from (named in messages; not stored)
    """

    kind: str
    config: dict
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    epoch: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    global_step: int = 0
    seed: int = 0
    rng_state: dict | None = None
    resume_batch: int = 0
    partial_samples: int = 0
    partial_sums: dict[str, float] = field(default_factory=dict)
    preempted: bool = False
    provenance: dict | None = None
    predictor: PredictorState | None = None
    format_version: int = FORMAT_VERSION
    aam_version: str = __version__
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"checkpoint kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "encoder" and self.predictor is not None:
            raise ValueError("an encoder checkpoint has no predictor state")
        if self.kind == "predictor" and self.predictor is None:
            self.predictor = PredictorState()

    def to_payload(self) -> dict[str, Any]:
        """The plain dict ``torch.save`` writes (the predictor's fields at the top level)."""
        payload = {f.name: getattr(self, f.name) for f in fields(self)
                   if f.name not in ("predictor", "source")}
        payload["format_version"], payload["aam_version"] = FORMAT_VERSION, __version__
        if self.predictor is not None:
            payload.update({f.name: getattr(self.predictor, f.name)
                            for f in fields(self.predictor)})
        return payload

    @classmethod
    def from_payload(cls, payload: Any, source: str) -> "Checkpoint":
        """Check a loaded dict field by field and build the checkpoint (older formats upgraded).

        Raises
        ------
        InputError
            Naming the first field that is not what aam writes, or a format this aam does not
            read (one line that names the aam reading it).
        """
        version = _check_header(payload, source)
        if version < FORMAT_VERSION:
            payload = upgrade(payload, version)
        payload = dict(payload, config=without_removed(payload["config"], source))
        stored = check_tensor_sizes(payload["model_state"], source)
        check_model_sizes(payload["config"].get("model") or {}, source, stored=stored)
        best = payload.get("best_metric")
        if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))
                                 or math.isnan(best)):
            raise _bad(source, "best_metric", "a number or null", best)
        seed = payload.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
            raise _bad(source, "seed", f"a whole number in [0, {SEED_MAX}]", seed)
        sums = _mapping(source, "partial_sums", payload.get("partial_sums")) or {}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sums.values()):
            raise _bad(source, "partial_sums", "a mapping of log name to number", sums)
        return cls(
            kind=payload["kind"], config=payload["config"], model_state=payload["model_state"],
            optimizer_state=_optimizer_state(payload.get("optimizer_state"), source),
            scheduler_state=_scheduler_state(payload.get("scheduler_state"), source),
            epoch=_count(source, "epoch", payload.get("epoch", 0)) or 0,
            best_metric=None if best is None else float(best),
            best_epoch=_count(source, "best_epoch", payload.get("best_epoch"), optional=True),
            global_step=_count(source, "global_step", payload.get("global_step") or 0) or 0,
            seed=seed, rng_state=_rng_state(payload.get("rng_state"), source),
            resume_batch=_count(source, "resume_batch", payload.get("resume_batch") or 0) or 0,
            partial_samples=_count(source, "partial_samples",
                                   payload.get("partial_samples") or 0) or 0,
            partial_sums={str(k): float(v) for k, v in sums.items()},
            preempted=bool(payload.get("preempted", False)),
            provenance=_mapping(source, "provenance", payload.get("provenance")),
            predictor=(PredictorState.from_payload(payload, source)
                       if payload["kind"] == "predictor" else None),
            format_version=version, aam_version=str(payload.get("aam_version", "")),
            source=source)


def _check_header(payload: Any, source: str) -> int:
    """The format version, after checking the fields every format has."""
    required = ("format_version", "kind", "config", "model_state")
    if not isinstance(payload, dict) or not all(k in payload for k in required):
        raise InputError(f"{source} is not an AAM checkpoint (missing keys such as "
                         "format_version, kind, model_state). Pass a file written by aam "
                         "pretrain or aam train.")
    version = payload["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{source} has an unexpected checkpoint format field "
                         f"({str(version)[:40]!r}; expected a version number like "
                         f"{FORMAT_VERSION}). Use a checkpoint written by aam.")
    if payload["kind"] not in KINDS or not isinstance(payload["config"], dict):
        raise InputError(f"{source} has an unexpected checkpoint kind or config "
                         f"(kind {str(payload['kind'])[:40]!r}; expected one of "
                         f"{', '.join(KINDS)}). Use a checkpoint written by aam.")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{source} has checkpoint format {version} (written by aam "
            f"{str(payload.get('aam_version'))[:20]}), newer than this aam {__version__} reads "
            f"({OLDEST_FORMAT}-{FORMAT_VERSION}). Upgrade aam.")
    if version < OLDEST_FORMAT:
        raise InputError(
            f"{source} has checkpoint format {version}; this aam reads formats "
            f"{OLDEST_FORMAT}-{FORMAT_VERSION}. Retrain, or read it with {LAST_READER}.")
    return version


def _optimizer_state(value: Any, source: str) -> dict | None:
    state = _mapping(source, "optimizer_state", value)
    if state is not None and not (isinstance(state.get("state"), dict)
                                  and isinstance(state.get("param_groups"), list)):
        raise _bad(source, "optimizer_state", "an optimizer state (state, param_groups)", value)
    return state


def _scheduler_state(value: Any, source: str) -> dict | None:
    state = _mapping(source, "scheduler_state", value)
    if state is not None and not {"base_lrs", "last_epoch", "lr_lambdas"} <= set(state):
        raise _bad(source, "scheduler_state", "a learning-rate schedule state", value)
    return state


def _rng_state(value: Any, source: str) -> dict | None:
    rng = _mapping(source, "rng_state", value)
    if rng is None:
        return None
    numpy, python = rng.get("numpy"), rng.get("python")
    ok = (isinstance(rng.get("torch"), torch.Tensor) and rng["torch"].dtype == torch.uint8
          and isinstance(numpy, dict) and isinstance(python, dict)
          and isinstance(numpy.get("keys"), torch.Tensor) and numpy["keys"].numel() == 624
          and isinstance(python.get("internal"), (list, tuple))
          and len(python["internal"]) == 625)
    if not ok:
        raise _bad(source, "rng_state", "the random-number state aam writes", rng)
    return rng


def check_tensor_sizes(state: Any, source: str, limit: int | None = None) -> int:
    """Refuse a model state whose tensors hold more than ``limit`` elements in total, or whose
    entries are not tensors (checked on a memory-mapped load, before anything is copied)."""
    limit = MAX_CHECKPOINT_ELEMENTS if limit is None else limit
    if not isinstance(state, dict):
        raise InputError(f"{source}: model_state is a {type(state).__name__}, not a mapping of "
                         "tensors. Use a checkpoint written by aam.")
    total = 0
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{source}: model_state entry {short_id(str(name), 40)} is a "
                             f"{type(value).__name__}, not a tensor. Use a checkpoint written "
                             "by aam.")
        total += value.numel()
    if total > limit:
        raise InputError(f"{source}: its tensors hold {total} values, more than the limit "
                         f"{limit} (AAM_MAX_CHECKPOINT_ELEMENTS). Check the file or raise the "
                         "limit.")
    return total


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (format :data:`FORMAT_VERSION`)."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_payload(), tmp)


def load_checkpoint(path: str | Path, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` and check its kind, format and fields.

    Parameters
    ----------
    path : path
        A file written by :func:`save_checkpoint` (formats ``OLDEST_FORMAT`` and later).
    kind : {"encoder", "predictor"} or None
        The kind the caller needs; None accepts either.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputError
        If the file is truncated or corrupt, holds objects that are not plain data (a pickle
        that would run code), is of another kind, of a format this aam does not read, or has
        a field that is not what aam writes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # mmap: tensor sizes written in a crafted file allocate nothing before they are checked
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        reason = _unpickling_reason(str(err))
        if "GLOBAL" not in reason:
            raise InputError(f"{path} is corrupt or truncated and could not be read ({reason}). "
                             "Re-run the job that wrote it.") from None
        raise InputError(
            f"{path} is not a plain AAM checkpoint and was not loaded: it holds objects that "
            f"could run code ({reason}). Use a checkpoint written by aam."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            KeyError) as err:  # KeyError: a non-zip file read as a legacy pickle
        raise InputError(
            f"{path} is corrupt or truncated and could not be read "
            f"({type(err).__name__}). Re-run the job that wrote it."
        ) from None
    checkpoint = Checkpoint.from_payload(payload, str(path))
    if kind is not None and checkpoint.kind != kind:
        hint = {"encoder": "aam pretrain writes encoder.pt",
                "predictor": "aam train writes model.pt"}.get(kind, "")
        raise InputError(
            f"{path} is a {checkpoint.kind!r} checkpoint but a {kind!r} checkpoint is needed "
            f"here ({hint})."
        )
    return checkpoint


def _unpickling_reason(text: str) -> str:
    """The specific line of torch's long weights-only error (e.g. the blocked GLOBAL)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line[:160]
    return (lines[0] if lines else "unsupported content")[:160]
