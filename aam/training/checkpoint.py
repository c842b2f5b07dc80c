"""Checkpoints: one ``torch.save`` dict in the design's format, written atomically, read safely.

Files load with ``torch.load(weights_only=True)``: only tensors and plain Python values inside,
so a crafted file cannot run code when it is opened.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from aam import __version__
from aam.atomic import atomic_path
from aam.errors import InputError
from aam.validate import check_checkpoint_fields, check_model_sizes, check_tensor_sizes

FORMAT_VERSION = 5  # 5: a fitted abundance head reads a frozen sequence-encoder snapshot
# Settings that older formats did not record, with the behaviour their models were trained with:
# (formats before this one, checkpoint kind or None for any, config section or "" for the top
# level, defaults). Format 2 turned the ASV batch norm on, format 3 the predictor's abundance head,
# format 4 fitted that head before fine-tuning on random Fourier features, 512 wide (before:
# a GELU layer of 4 x embedding dim), format 5 kept the ASV vectors that head reads still while
# fine-tuning (before: the trained encoder's).
UNRECORDED = ((2, None, "model", {"count_features": "log1p", "asv_norm": False}),
              (3, "predictor", "", {"abundance_head": False}),
              (4, "predictor", "", {"abundance_head_init": "zero", "abundance_head_width": 0,
                                    "abundance_head_features": "mlp"}),
              (5, "predictor", "", {"abundance_head_encoder": "live"}))
KINDS = ("encoder", "predictor")
REQUIRED_KEYS = ("format_version", "aam_version", "kind", "config", "model_state", "epoch",
                 "best_metric", "seed")


def make_payload(kind: str, config: dict, model_state: dict, *, optimizer_state=None,
                 scheduler_state=None, epoch: int = 0, best_metric: float | None = None,
                 target_transform: dict | None = None, categorical_vocab: dict | None = None,
                 seed: int = 0, rng_state: dict | None = None, **extra: Any) -> dict:
    """The checkpoint dict of the design (plus any ``extra`` plain entries).

    Parameters
    ----------
    kind : {"encoder", "predictor"}
    config : dict
        ``aam.config.to_dict`` of the stage config.
    model_state : dict[str, Tensor]
        ``state_dict()`` of the unwrapped model.
    """
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    return {
        "format_version": FORMAT_VERSION, "aam_version": __version__, "kind": kind,
        "config": config, "model_state": model_state, "optimizer_state": optimizer_state,
        "scheduler_state": scheduler_state, "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "target_transform": target_transform, "categorical_vocab": categorical_vocab or {},
        "seed": int(seed), "rng_state": rng_state, **extra,
    }


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` (see :func:`make_payload`) to ``path`` atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` and check its kind and format version.

    Parameters
    ----------
    path : path
        A file written by :func:`save_checkpoint`.
    kind : {"encoder", "predictor"} or None
        The kind the caller needs; None accepts either.

    Returns
    -------
    dict
        The payload.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputError
        If the file is truncated or corrupt, holds objects that are not plain data (a pickle
        that would run code), is of another kind, or was written by a newer format.
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
    _check_payload(payload, path, kind)
    for before, kind_, section, defaults in UNRECORDED:
        if payload["format_version"] < before and kind_ in (None, payload["kind"]):
            config = payload["config"]
            target = config.setdefault(section, {}) if section else config
            for key, value in defaults.items():
                target.setdefault(key, value)
    return payload


def _unpickling_reason(text: str) -> str:
    """The specific line of torch's long weights-only error (e.g. the blocked GLOBAL)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line[:160]
    return (lines[0] if lines else "unsupported content")[:160]


def _check_payload(payload: Any, path: Path, kind: str | None) -> None:
    if not isinstance(payload, dict) or not all(k in payload for k in REQUIRED_KEYS):
        raise InputError(f"{path} is not an AAM checkpoint (missing keys such as format_version, "
                         "kind, model_state). Pass a file written by aam pretrain or aam train.")
    version = payload["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{path} has an unexpected checkpoint format field "
                         f"({str(version)[:40]!r}; expected a version number like "
                         f"{FORMAT_VERSION}). Use a checkpoint written by aam.")
    if payload["kind"] not in KINDS or not isinstance(payload["config"], dict):
        raise InputError(f"{path} has an unexpected checkpoint kind or config "
                         f"(kind {str(payload['kind'])[:40]!r}; expected one of "
                         f"{', '.join(KINDS)}). Use a checkpoint written by aam.")
    check_checkpoint_fields(payload, str(path))
    stored = check_tensor_sizes(payload["model_state"], str(path))
    check_model_sizes(payload["config"].get("model") or {}, str(path), stored=stored)
    if version > FORMAT_VERSION:
        raise InputError(
            f"{path} has checkpoint format {payload['format_version']} (written by aam "
            f"{payload['aam_version']}), newer than this aam {__version__} reads "
            f"({FORMAT_VERSION}). Upgrade aam."
        )
    if kind is not None and payload["kind"] != kind:
        hint = {"encoder": "aam pretrain writes encoder.pt",
                "predictor": "aam train writes model.pt"}.get(kind, "")
        raise InputError(
            f"{path} is a {payload['kind']!r} checkpoint but a {kind!r} checkpoint is needed "
            f"here ({hint})."
        )
