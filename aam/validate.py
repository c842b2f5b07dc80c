"""One validation layer for numbers that come from outside: flags, YAML, tables, trees,
distance matrices, archives and model sizes (a checkpoint's fields are checked by
:class:`aam.training.checkpoint.Checkpoint`).

Each check raises :class:`aam.errors.InputError` with one line naming the source (flag, config
key, file and sample/feature/line) and how to fix it. Callers hook a check at the boundary where
the number enters (one call each), so library code behind it can trust its inputs.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from aam.data.sample_ids import short_id
from aam.errors import InputError

log = logging.getLogger(__name__)

#: Archive members (.qza payloads) larger than this once decompressed are refused before reading.
DEFAULT_ARCHIVE_MEMBER_BYTES = int(os.environ.get("AAM_MAX_ARCHIVE_MEMBER_BYTES", 4 * 2**30))
#: ... and so are members that expand more than this many times their compressed size.
DEFAULT_ARCHIVE_RATIO = float(os.environ.get("AAM_MAX_ARCHIVE_RATIO", 200))
MAX_ARCHIVE_MEMBER_BYTES, MAX_ARCHIVE_RATIO = DEFAULT_ARCHIVE_MEMBER_BYTES, DEFAULT_ARCHIVE_RATIO
#: Checkpoints whose tensors hold more elements than this (in total) are refused before loading.
MAX_CHECKPOINT_ELEMENTS = int(os.environ.get("AAM_MAX_CHECKPOINT_ELEMENTS", 4 * 10**9))


def set_archive_limits(max_bytes: Optional[int] = None, max_ratio: Optional[float] = None):
    """Set the archive limits of this process (``aam prepare --max-archive-bytes`` and
    ``--max-archive-ratio``); None restores the default (from the environment variables)."""
    global MAX_ARCHIVE_MEMBER_BYTES, MAX_ARCHIVE_RATIO
    if max_bytes is not None:
        check_range(max_bytes, "--max-archive-bytes", 1)
    if max_ratio is not None:
        check_range(max_ratio, "--max-archive-ratio", 1)
    MAX_ARCHIVE_MEMBER_BYTES = DEFAULT_ARCHIVE_MEMBER_BYTES if max_bytes is None else int(max_bytes)
    MAX_ARCHIVE_RATIO = DEFAULT_ARCHIVE_RATIO if max_ratio is None else float(max_ratio)


# --- scalars: flags and config values --------------------------------------------------------


def check_finite(value, source: str) -> None:
    """Raise InputError when ``value`` (a number) is NaN or infinite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{source} must be a finite number, got {value}.")


def check_choice(name: str, value: str, choices) -> None:
    """Raise InputError unless ``value`` is one of ``choices`` (listed in the message)."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def check_at_most(name: str, value, high, why: str) -> None:
    """Finite, and at most ``high``: a value a model can train with (``why`` says so)."""
    check_finite(value, name)
    if value > high:
        raise InputError(f"{name} must be at most {high:g}, got {value:g} ({why}).")


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """Raise InputError unless ``value`` is finite and > 0 (>= 1 for an integer; >= 0 with
    ``allow_zero``)."""
    check_finite(value, name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1" if isinstance(value, int) else "> 0"
        raise InputError(f"{name} must be {bound}, got {value}.")


def check_range(value, source: str, low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False) -> None:
    """Raise InputError unless ``value`` is finite and within [low, high] (``(low`` if open)."""
    check_finite(value, source)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and value > high
    if below or above:
        bound = " and ".join(b for b in (
            None if low is None else f"{'>' if low_open else '>='} {low}",
            None if high is None else f"<= {high}") if b)
        raise InputError(f"{source} must be {bound}, got {value}.")


SEED_MAX = 2**32 - 1


def check_seed(value, source: str) -> None:
    """Seeds feed NumPy and torch generators: integers in [0, 2**32 - 1]."""
    if value is not None and not isinstance(value, bool):
        check_range(value, source, 0, SEED_MAX)


def check_namespace(args: argparse.Namespace) -> None:
    """Every float flag of a parsed command line must be finite and every seed flag in
    [0, 2**32 - 1] (names the flag)."""
    for dest, value in vars(args).items():
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, float):
            check_finite(value, flag)
        if dest.endswith("seed") and isinstance(value, int):
            check_seed(value, flag)


# --- tables ----------------------------------------------------------------------------------


def check_counts(counts, sample_ids: Sequence[str], feature_ids: Sequence[str], source: str,
                 allow_fractional: bool = False) -> None:
    """Counts must be finite, non-negative and whole numbers (fractional: only when allowed).

    Parameters
    ----------
    counts : scipy.sparse matrix or ndarray [N samples, F features]
    allow_fractional : bool
        Accept non-integer counts with a warning (relative abundances, rarefied averages).
    """
    data, rows, cols = _entries(counts)
    problems = (("not finite (NaN or infinite)", ~np.isfinite(data),
                 "Fix or remove these values."),
                ("negative", np.isfinite(data) & (data < 0), "Counts must be >= 0."))
    for what, mask, fix in problems:
        if mask.any():
            _raise_entry(source, what, mask, data, rows, cols, sample_ids, feature_ids, fix)
    fractional = data != np.round(data)
    if fractional.any():
        if not allow_fractional:
            _raise_entry(source, "not a whole number", fractional, data, rows, cols, sample_ids,
                         feature_ids, "Pass read counts, or add --allow-fractional-counts to "
                         "use them as they are.")
        log.warning("%s has %d fractional counts; used as they are (--allow-fractional-counts)",
                    source, int(fractional.sum()))


def _entries(counts):
    if hasattr(counts, "tocoo"):
        coo = counts.tocoo()
        return np.asarray(coo.data, dtype=np.float64), coo.row, coo.col
    dense = np.asarray(counts, dtype=np.float64)
    rows, cols = np.nonzero(dense != 0)
    return dense[rows, cols], rows, cols


def _raise_entry(source, what, mask, data, rows, cols, sample_ids, feature_ids, fix):
    k = int(np.flatnonzero(mask)[0])
    raise InputError(f"{source} has {int(mask.sum())} counts that are {what}; the first is "
                     f"{data[k]:g} for sample {short_id(sample_ids[rows[k]])}, feature "
                     f"{short_id(feature_ids[cols[k]])}. {fix}")


# --- trees -----------------------------------------------------------------------------------


def check_branch_lengths(tree, source: str) -> None:
    """Every branch length of a scikit-bio tree must be finite and >= 0 (None: left to UniFrac's
    own check of missing lengths)."""
    for node in tree.traverse(include_self=True):
        length = node.length
        if length is None:
            continue
        if not math.isfinite(length) or length < 0:
            name = short_id(node.name) if node.name else "(unnamed node)"
            raise InputError(f"{source} has a branch length of {length} above {name}; branch "
                             "lengths must be finite and >= 0. Fix the tree.")


# --- distance matrices -----------------------------------------------------------------------


def check_distance_matrix(ids: Sequence[str], matrix, source: str, atol: float = 1e-6):
    """Return ``matrix`` as float64 [N, N] after checking it is a distance matrix.

    Raises
    ------
    InputError
        Not numeric (e.g. an object array), not square or not one ID per row, non-finite or
        negative entries, not symmetric, or a non-zero diagonal (naming the first sample pair).
    """
    array = np.asarray(matrix)
    if array.dtype.kind not in "fiub":
        raise InputError(f"{source} holds {array.dtype} values, not numbers. Save the distance "
                         "matrix as a float array.")
    array = array.astype(np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] != len(ids):
        raise InputError(f"{source}: distance matrix of shape {array.shape} does not match its "
                         f"{len(ids)} IDs; it must be square with one ID per row.")
    checks = (
        ("is not finite (NaN or infinite)", ~np.isfinite(array)),
        ("is negative", array < 0),
        ("differs from its mirror entry (not symmetric)",
         np.isfinite(array) & (np.abs(array - array.T) > atol)),
        ("is a non-zero diagonal entry", np.diag(np.abs(np.diag(array)) > atol)),
    )
    for what, mask in checks:
        if mask.any():
            i, j = (int(x) for x in np.argwhere(mask)[0])
            raise InputError(f"{source} is not a distance matrix: the entry for "
                             f"{short_id(ids[i])}, {short_id(ids[j])} ({array[i, j]:g}) {what}; "
                             f"{int(mask.sum())} such entries. Recompute the matrix.")
    return array


# --- archives and model sizes: sizes before allocation ----------------------------------------


def check_archive_members(infos: Iterable, source: str,
                          max_bytes: Optional[int] = None, max_ratio: Optional[float] = None):
    """Refuse zip members that would expand past ``max_bytes`` or ``max_ratio`` x their
    compressed size, before any is decompressed (zip bombs)."""
    max_bytes = MAX_ARCHIVE_MEMBER_BYTES if max_bytes is None else max_bytes
    max_ratio = MAX_ARCHIVE_RATIO if max_ratio is None else max_ratio
    names = "--max-archive-bytes / AAM_MAX_ARCHIVE_MEMBER_BYTES"
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > max_bytes or total > max_bytes:
            raise InputError(f"{source}: member {short_id(info.filename, 60)} expands to "
                             f"{info.file_size} bytes (limit {max_bytes}, {names}). Check the "
                             "file or raise the limit.")
        if info.file_size > 2**20 and ratio > max_ratio:
            raise InputError(f"{source}: member {short_id(info.filename, 60)} expands "
                             f"{ratio:.0f} times (limit {max_ratio:g}, --max-archive-ratio); it "
                             "looks like a zip bomb. Check the file or raise the limit.")


def check_model_sizes(model_config: dict, source: str, limit: Optional[int] = None,
                      stored: Optional[int] = None) -> None:
    """Refuse a stored model config whose sizes would build a model above ``limit`` parameters,
    or far larger than the ``stored`` weights, before the model is allocated (the estimate counts
    the transformer blocks from embedding dim, feed-forward width and layer counts)."""
    limit = MAX_CHECKPOINT_ELEMENTS if limit is None else limit
    try:
        dim = int(model_config.get("embedding_dim", 0))
        ff = int(model_config.get("ff_mult", 4))
        layers = sum(int(model_config.get(k, 0)) for k in
                     ("nucleotide_layers", "asv_layers", "sample_layers")) + 2
        max_bp = int(model_config.get("max_bp", 0))
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise InputError(f"{source}: the stored model config is not a mapping of numbers. Use "
                         "a checkpoint written by aam.") from None
    estimate = layers * (4 + 2 * max(ff, 1)) * dim * dim + max_bp * dim
    too_big = stored is not None and estimate > 4 * stored + 10**6
    if min(dim, ff, layers, max_bp) < 0 or estimate > limit or too_big:
        than = f"its {stored} stored weights or " if stored is not None else ""
        raise InputError(f"{source}: model sizes (embedding_dim {dim}, {layers - 2} layers, "
                         f"max_bp {max_bp}) would need about {estimate} parameters, more than "
                         f"{than}the limit {limit} (AAM_MAX_CHECKPOINT_ELEMENTS). Use smaller "
                         "sizes or check the file.")


def load_error_reason(err: Exception) -> str:
    """The specific line of torch's ``load_state_dict`` error, shortened to stay in one line:
    ``size mismatch for w: checkpoint [6, 15], model [6, 16]`` or the missing/unexpected keys."""
    import re

    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = lines[1] if len(lines) > 1 else lines[0] if lines else "unknown mismatch"
    line = re.sub(r"copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, the "
                  r"shape in current model is torch\.Size\((\[[^\]]*\])\)\.?",
                  r"checkpoint \1, model \2", line)
    return line if len(line) <= 120 else line[:120] + "…"
