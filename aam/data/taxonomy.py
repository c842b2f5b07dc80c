"""Taxonomy: QIIME 2 ``taxonomy.tsv`` or a ``FeatureData[Taxonomy]`` ``.qza``, keyed by sequence.

Feature IDs may be the ASV sequences or their MD5 digests (QIIME 2's hashed IDs, e.g. DADA2's
default); :func:`taxa_by_sequence` resolves both to the prepared table's sequences and
:func:`check_taxonomy_ids` warns about (or refuses) IDs that are not features of the data.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from aam.atomic import atomic_path
from aam.data.qza import read_text_input
from aam.errors import InputError, short_text

log = logging.getLogger(__name__)

TAXONOMY_FILE = "taxonomy.tsv"  # name of the copy `aam prepare --taxonomy` stores


def feature_md5(sequence: str) -> str:
    """QIIME 2's hashed feature ID of an ASV sequence (MD5 of the upper-case sequence)."""
    return hashlib.md5(sequence.upper().encode("ascii", errors="replace")).hexdigest()


def read_taxonomy(path: str | Path) -> pd.Series:
    """Taxon by feature ID from a taxonomy TSV or ``.qza`` (``Feature ID`` and ``Taxon`` columns).

    Surrounding whitespace of the IDs is stripped; IDs are compared case-insensitively (as
    :func:`taxa_by_sequence` looks them up).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        The file lacks the two columns (naming what it has), is not a taxonomy artifact, has no
        rows, an empty Feature ID or a Feature ID listed twice (naming it and its lines).
    """
    text = read_text_input(path, "taxonomy", ".tsv", "FeatureData[Taxonomy]")
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path} is not a readable taxonomy TSV ({str(err).splitlines()[0]}). "
                         "Export it with `qiime tools export`.") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the extra fields as an index
        raise InputError(f"{path}: line 2 has more tab-separated fields than the header. Give "
                         "every row the header's fields (Feature ID, Taxon, ...).")
    if len(frame.columns):
        frame = frame[~frame.iloc[:, 0].astype(str).str.startswith("#q2:")]
    missing = [c for c in ("Feature ID", "Taxon") if c not in frame.columns]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)} (found "
                         f"{', '.join(map(str, frame.columns[:5])) or 'none'}). Give a QIIME 2 "
                         "taxonomy (taxonomy.tsv or FeatureData[Taxonomy] .qza).")
    if frame.empty:
        raise InputError(f"{path} has no taxonomy rows (only a header). Give the taxonomy of "
                         "this table's features.")
    ids = frame["Feature ID"].astype(str).str.strip()
    lines = pd.Series(frame.index + 2, index=frame.index)  # file line (the header is line 1)
    empty = ids == ""
    if empty.any():
        raise InputError(f"{path} line {int(lines[empty].iloc[0])} has an empty Feature ID. Give "
                         "every row the feature's ID (its sequence or MD5 hash).")
    folded = ids.str.upper()
    repeated = folded.duplicated(keep=False)
    if repeated.any():
        first = folded[repeated].iloc[0]
        where = ", ".join(map(str, lines[folded == first].tolist()[:5]))
        n_repeated = folded[repeated].nunique()
        others = f"; {n_repeated - 1} more IDs are repeated" if n_repeated > 1 else ""
        raise InputError(f"{path} lists Feature ID {_short(ids[folded == first].iloc[0])} more "
                         f"than once (lines {where}{others}). Keep one row per feature.")
    taxa = pd.Series(frame["Taxon"].astype(str).to_numpy(), index=pd.Index(ids.to_numpy(),
                                                                           name="Feature ID"),
                     name="Taxon")
    taxa.attrs["source"] = str(path)
    return taxa


def check_taxonomy_ids(taxonomy: pd.Series, sequences: Iterable[str], data: str,
                       feature_ids: Iterable[str] = ()) -> int:
    """Count the taxonomy's Feature IDs that are features of the data; warn about the others.

    An ID matches an ASV when it is the sequence, the MD5 digest of the sequence or one of
    ``feature_ids`` (the table's own IDs), case-insensitively.

    Parameters
    ----------
    taxonomy : Series
        From :func:`read_taxonomy` (its ``attrs["source"]`` names the file in messages).
    sequences : iterable of str
        The data's ASV sequences.
    data : str
        What the data is, for messages (the table or prepared folder).
    feature_ids : iterable of str, optional
        Further IDs that count as features (the input table's IDs).

    Returns
    -------
    int
        Feature IDs of the taxonomy that match.

    Raises
    ------
    InputError
        None of the taxonomy's Feature IDs matches (it belongs to another data set).
    """
    known = set()
    for seq in sequences:
        known.update((str(seq).upper(), feature_md5(str(seq)).upper()))
    known.update(str(fid).upper() for fid in feature_ids)
    foreign = [fid for fid in taxonomy.index if str(fid).upper() not in known]
    source = taxonomy.attrs.get("source", "the taxonomy")
    if len(foreign) == len(taxonomy):
        raise InputError(f"none of the {len(taxonomy)} Feature IDs in {source} is a feature of "
                         f"{data} (first: {short_text(foreign[0])}). Use this table's taxonomy "
                         "(IDs: the sequences or their MD5 hashes).")
    if foreign:
        log.warning("%d of %d Feature IDs in %s are not features of %s and are ignored "
                    "(first: %s); check that the taxonomy belongs to this table",
                    len(foreign), len(taxonomy), source, data,
                    ", ".join(_short(f) for f in foreign[:3]))
    return len(taxonomy) - len(foreign)


def _short(feature_id) -> str:
    return short_text(feature_id, 32)  # MD5 IDs stay whole, sequences are cut to 32


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


__all__ = ["TAXONOMY_FILE", "check_taxonomy_ids", "feature_md5", "read_taxonomy", "short_taxon",
           "taxa_by_sequence", "write_taxonomy"]
