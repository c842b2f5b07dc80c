"""The QIIME 2 metadata-file rules (docs.qiime2.org, "Metadata in QIIME 2"), checked without
QIIME 2.

A TSV is accepted by ``qiime metadata tabulate`` when: the first non-comment line is the header;
its first column name is one of the ID headers (case-insensitive ``id``, ``sampleid``,
``sample id``, ``sample-id``, ``featureid``, ``feature id``, ``feature-id``; or exactly
``#SampleID``, ``#Sample ID``, ``#OTUID``, ``#OTU ID``, ``sample_name``); IDs are non-empty,
unique, do not start with ``#`` and are not themselves ID headers; column names are non-empty,
unique, do not start with ``#`` and are not ID headers.
"""

from __future__ import annotations

import csv
from pathlib import Path

ID_HEADERS = {"sample": {"id", "sampleid", "sample id", "sample-id"},
              "feature": {"id", "featureid", "feature id", "feature-id"}}
EXACT_HEADERS = {"#SampleID", "#Sample ID", "#OTUID", "#OTU ID", "sample_name"}
ALL_HEADERS = ID_HEADERS["sample"] | ID_HEADERS["feature"]


def _reserved(name: str) -> bool:
    return name.lower() in ALL_HEADERS or name in EXACT_HEADERS


def check_qiime2_metadata(path: Path, kind: str) -> list[str]:
    """Assert ``path`` follows the rules for ``kind`` ('sample' or 'feature') metadata;
    returns the IDs."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t")
                if r and any(c.strip() for c in r)]
    header, body = rows[0], [r for r in rows[1:] if not r[0].startswith("#")]
    first = header[0].strip()
    assert first.lower() in ID_HEADERS[kind] or first in EXACT_HEADERS, \
        f"{path}: first column '{first}' is not a QIIME 2 {kind} ID header"
    columns = [c.strip() for c in header[1:]]
    assert all(columns), f"{path}: empty column name"
    assert len(set(columns)) == len(columns), f"{path}: duplicate column names"
    assert not any(c.startswith("#") or _reserved(c) for c in columns), \
        f"{path}: a column name starts with '#' or is an ID header: {columns}"
    ids = [r[0].strip() for r in body]
    assert all(ids), f"{path}: empty ID"
    assert len(set(ids)) == len(ids), f"{path}: duplicate IDs"
    assert not any(i.startswith("#") or _reserved(i) for i in ids), f"{path}: reserved ID"
    assert all(len(r) == len(header) for r in body), f"{path}: ragged rows"
    return ids
