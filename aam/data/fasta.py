"""Feature sequences: FASTA / FeatureData[Sequence] .qza reading, hash-ID mapping, MD5 checks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from aam.data.qza import read_text_input
from aam.errors import InputError, first_items

_SEQUENCE_ID = re.compile(r"[ACGTURYSWKMBDHVN.\-]+", flags=re.IGNORECASE)
_MD5_ID = re.compile(r"[0-9a-f]{32}", flags=re.IGNORECASE)


def read_fasta(path: str | Path) -> dict[str, str]:
    """Read a FASTA file or FeatureData[Sequence] ``.qza`` into ``{id: sequence}``.

    The ID is the header up to the first whitespace; multi-line records are joined.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        No records, or a duplicate ID.
    """
    path = Path(path)
    text = read_text_input(path, "rep-seqs", ".fasta", "FeatureData[Sequence]")
    records: dict[str, list[str]] = {}
    duplicates, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">"):
            current = line[1:].split(maxsplit=1)[0] if line[1:].strip() else ""
            if current in records:
                duplicates.append(current)
            records[current] = []
        elif line and current is not None:
            records[current].append(line)
    if duplicates:
        raise InputError(f"{path} has duplicate sequence IDs: {first_items(duplicates)}. "
                         "Keep one record per ID.")
    if not records:
        raise InputError(f"{path} holds no FASTA records ('>id' lines). Pass the rep-seqs "
                         "FASTA or FeatureData[Sequence] .qza that belongs to the table.")
    return {name: "".join(parts) for name, parts in records.items()}


def looks_like_sequence(feature_id: str) -> bool:
    """True when a feature ID is itself a nucleotide sequence (IUPAC letters only)."""
    return bool(_SEQUENCE_ID.fullmatch(feature_id))


def non_acgt_fraction(sequence: str) -> float:
    """Fraction of characters of an uppercase ``sequence`` that are not A, C, G or T."""
    if not sequence:
        return 1.0
    acgt = sum(sequence.count(base) for base in "ACGT")
    return 1.0 - acgt / len(sequence)


@dataclass
class SequenceResolution:
    """Result of mapping feature IDs to sequences.

    ``sequences[i]`` is the uppercase sequence of feature ``i``; ``dropped`` maps a reason to the
    feature indices that have no usable sequence.
    """

    sequences: list[str | None]
    dropped: dict[str, list[int]] = field(default_factory=dict)


def resolve_sequences(feature_ids: list[str], rep_seqs: dict[str, str] | None,
                      max_ambiguous_fraction: float = 0.01, source: str = "rep-seqs"
                      ) -> SequenceResolution:
    """Map feature IDs to uppercase sequences, checking MD5-looking IDs against their sequence.

    Parameters
    ----------
    feature_ids : list of str [F]
        BIOM observation IDs: sequences, or hash IDs found in ``rep_seqs``.
    rep_seqs : dict or None
        ``{id: sequence}`` from :func:`read_fasta`; None when the IDs are the sequences.
    max_ambiguous_fraction : float
        Features whose non-ACGT fraction exceeds this are dropped ("ambiguous bases").
    source : str
        Name of the rep-seqs file for messages.

    Returns
    -------
    SequenceResolution
        Per-feature sequences (None where dropped) and the dropped indices per reason
        ("no sequence", "ambiguous bases").

    Raises
    ------
    InputError
        Hash IDs without ``rep_seqs``; MD5-looking IDs whose sequence has another MD5.
    """
    if rep_seqs is None:
        hashed = [fid for fid in feature_ids if not looks_like_sequence(fid)]
        if hashed:
            raise InputError(
                f"{first_items(hashed)} feature IDs of the table are not sequences (hash IDs?). "
                "Pass --rep-seqs with the FASTA or FeatureData[Sequence] .qza that maps them."
            )
        raw = list(feature_ids)
    else:
        raw = [rep_seqs.get(fid, fid if looks_like_sequence(fid) else None) for fid in feature_ids]
    _check_md5(feature_ids, raw, source)
    result = SequenceResolution(sequences=[])
    for index, seq in enumerate(raw):
        seq = seq.upper() if seq is not None else None
        if not seq:
            result.dropped.setdefault("no sequence", []).append(index)
            seq = None
        elif non_acgt_fraction(seq) > max_ambiguous_fraction:
            result.dropped.setdefault("ambiguous bases", []).append(index)
            seq = None
        result.sequences.append(seq)
    return result


def _check_md5(feature_ids: list[str], raw: list[str | None], source: str) -> None:
    wrong = []
    for fid, seq in zip(feature_ids, raw):
        if seq is None or not _MD5_ID.fullmatch(fid):
            continue
        digests = {hashlib.md5(s.encode("ascii", errors="replace")).hexdigest()
                   for s in (seq, seq.upper())}
        if fid.lower() not in digests:
            wrong.append(fid)
    if wrong:
        raise InputError(
            f"{first_items(wrong)} feature IDs look like MD5 hashes but do not match the MD5 of "
            f"their sequence in {source}. Pass the rep-seqs that belong to this table."
        )
