"""Nucleotide tokens: ASV sequences to fixed-length uint8 rows (vectorised, no per-base loop)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aam.errors import InputError

PAD = 0
A = 1
C = 2
G = 3
T = 4
MASK = 5
VOCAB_SIZE = 6

# 256-entry byte -> token table. Lowercase is accepted; every other byte (N, IUPAC codes, '-')
# maps to PAD: ``aam prepare`` drops ambiguous ASVs, so none reach here in normal use.
_LOOKUP = np.full(256, PAD, dtype=np.uint8)
for _base, _token in (("A", A), ("C", C), ("G", G), ("T", T)):
    _LOOKUP[ord(_base)] = _token
    _LOOKUP[ord(_base.lower())] = _token


def tokenize(sequences: Sequence[str], max_bp: int) -> np.ndarray:
    """Encode nucleotide sequences as token rows, truncated or right-padded to ``max_bp``.

    Parameters
    ----------
    sequences : sequence of str, length N
        ASV sequences (A, C, G, T; lowercase accepted).
    max_bp : int
        Tokens per row. Longer sequences are truncated on the right, shorter ones padded with
        ``PAD``.

    Returns
    -------
    tokens : np.ndarray uint8 [N, max_bp]
        ``A=1, C=2, G=3, T=4``, ``PAD=0`` after the sequence end. Any other character (``N``,
        IUPAC ambiguity codes, gaps) also becomes ``PAD``.

    Raises
    ------
    InputError
        If ``max_bp`` is not a positive integer.
    """
    if int(max_bp) < 1:
        raise InputError(f"max_bp must be >= 1 to tokenize ASVs, got {max_bp}.")
    max_bp = int(max_bp)
    n = len(sequences)
    out = np.zeros((n, max_bp), dtype=np.uint8)
    if n == 0:
        return out
    encoded = [s.encode("ascii", errors="replace")[:max_bp] for s in sequences]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=n)
    flat = _LOOKUP[np.frombuffer(b"".join(encoded), dtype=np.uint8)]
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(flat.size) - np.repeat(starts, lengths)
    out[rows, cols] = flat
    return out


def longest(sequences: Sequence[str]) -> int:
    """Length of the longest sequence (0 for none): the default ``max_bp`` of a table."""
    return max((len(s) for s in sequences), default=0)
