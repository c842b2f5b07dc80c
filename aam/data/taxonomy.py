"""Taxonomy: QIIME 2 ``taxonomy.tsv`` or a ``FeatureData[Taxonomy]`` ``.qza``, keyed by sequence.

Feature IDs may be the ASV sequences or their MD5 digests (QIIME 2's hashed IDs, e.g. DADA2's
default); :func:`taxa_by_sequence` resolves both to the prepared table's sequences.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from aam.atomic import atomic_path
from aam.data.qza import read_text_input
from aam.errors import InputError

TAXONOMY_FILE = "taxonomy.tsv"  # name of the copy `aam prepare --taxonomy` stores


def feature_md5(sequence: str) -> str:
    """QIIME 2's hashed feature ID of an ASV sequence (MD5 of the upper-case sequence)."""
    return hashlib.md5(sequence.upper().encode("ascii", errors="replace")).hexdigest()


def read_taxonomy(path: str | Path) -> pd.Series:
    """Taxon by feature ID from a taxonomy TSV or ``.qza`` (``Feature ID`` and ``Taxon`` columns).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        The file lacks the two columns (naming what it has) or is not a taxonomy artifact.
    """
    text = read_text_input(path, "taxonomy", ".tsv", "FeatureData[Taxonomy]")
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path} is not a readable taxonomy TSV ({str(err).splitlines()[0]}). "
                         "Export it with `qiime tools export`.") from None
    if len(frame.columns):
        frame = frame[~frame.iloc[:, 0].astype(str).str.startswith("#q2:")]
    missing = [c for c in ("Feature ID", "Taxon") if c not in frame.columns]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)} (found "
                         f"{', '.join(map(str, frame.columns[:5])) or 'none'}). Give a QIIME 2 "
                         "taxonomy (taxonomy.tsv or FeatureData[Taxonomy] .qza).")
    return frame.set_index("Feature ID")["Taxon"]


def taxa_by_sequence(taxonomy: pd.Series, sequences: Iterable[str],
                     feature_ids: Optional[dict[str, str]] = None) -> pd.Series:
    """Taxon of each sequence ('' when unknown), looking its ID up as the sequence, its MD5
    digest or its original feature ID (``feature_ids``: sequence -> table ID)."""
    sequences = list(sequences)
    feature_ids = feature_ids or {}
    keyed = {str(k).upper(): v for k, v in taxonomy.items()}
    taxa = [keyed.get(s.upper(), keyed.get(feature_md5(s).upper(),
                                           keyed.get(str(feature_ids.get(s, "")).upper(), "")))
            for s in sequences]
    return pd.Series(taxa, index=sequences, dtype=object)


def write_taxonomy(path: str | Path, taxa: pd.Series) -> None:
    """Write a QIIME 2 taxonomy TSV (``Feature ID`` = sequence, ``Taxon``) atomically."""
    frame = pd.DataFrame({"Feature ID": taxa.index, "Taxon": taxa.to_numpy()})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def short_taxon(taxon: str, levels: int = 2) -> str:
    """The last ``levels`` named ranks of a ``k__; p__; ...`` string ('unassigned' if none)."""
    parts = [p.strip() for p in str(taxon or "").split(";")]
    named = [p for p in parts if p and not p.endswith("__")]
    return "; ".join(named[-levels:]) if named else "unassigned"


__all__ = ["TAXONOMY_FILE", "feature_md5", "read_taxonomy", "short_taxon", "taxa_by_sequence",
           "write_taxonomy"]
