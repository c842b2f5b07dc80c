"""Sample IDs and sample lists: one rule for every command.

Every sample list (``--train-samples``, ``--val-samples``, ``--test-samples``, ``--samples``) and
every sample-ID column (metadata, table, distance-matrix IDs) goes through this module, so the
same ID means the same sample everywhere:

* surrounding whitespace (spaces, tabs, a Windows ``\\r``) is stripped, in every file;
* an ID holding a tab, newline or other control character is refused (shown with ``repr``);
* blank lines of a sample list are skipped; an ID listed twice is refused;
* IDs not in the prepared table are refused (never skipped), naming them;
* train, validation and test lists that share a sample are refused (leakage).

IDs in messages are cut to :data:`SHOWN_CHARS` characters with an ellipsis, so a 150-nt sequence
used as an ID keeps the error one short line.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from aam.errors import SHOWN_CHARS, InputError, short_text


def short_id(sample_id, limit: int = SHOWN_CHARS) -> str:
    """``sample_id`` as shown in a message: ``repr`` when it holds odd characters, cut to
    about ``limit`` characters with an ellipsis."""
    text = str(sample_id)
    if not text.isprintable() or text != text.strip() or not text:
        text = repr(text)
    return short_text(text, limit)


def show_ids(ids: Iterable, n: int = 5) -> str:
    """``count (first k: a, b, ...)`` with every ID shortened (see :func:`short_id`)."""
    ids = list(ids)
    shown = ", ".join(short_id(x) for x in ids[:n])
    more = ", ..." if len(ids) > n else ""
    return f"{len(ids)} (first {min(n, len(ids))}: {shown}{more})"


def clean_id(raw, source: str) -> str:
    """One ID with surrounding whitespace stripped.

    Raises
    ------
    InputError
        The ID is empty after stripping or holds a control character (tab, newline, NUL, ...).
    """
    text = str(raw).strip()
    if not text:
        raise InputError(f"{source} has an empty sample ID ({short_id(raw)}). Give every sample "
                         "a non-empty ID.")
    if not text.isprintable():  # tabs, newlines, NUL, zero-width and other invisible characters
        raise InputError(f"{source} has a sample ID with a control character: "
                         f"{short_id(text, 40)}. One ID a line, without tabs or other columns.")
    return text


def clean_ids(ids: Iterable, source: str) -> list[str]:
    """Strip every ID of an ID column (see :func:`clean_id`) and refuse duplicates.

    Raises
    ------
    InputError
        An empty or control-character ID, or an ID that occurs twice (after stripping).
    """
    cleaned = [clean_id(x, source) for x in ids]
    check_unique(cleaned, source)
    return cleaned


def check_unique(ids: Sequence[str], source: str) -> None:
    """Raise InputError naming the IDs listed more than once in ``source``."""
    counts = Counter(ids)
    repeated = [x for x, n in counts.items() if n > 1]
    if repeated:
        raise InputError(f"{source} lists {show_ids(repeated)} sample IDs more than once. "
                         "Keep each sample once.")


def read_sample_list(path: str | Path, allow_empty: bool = False) -> list[str]:
    """Read one sample ID a line (blank lines skipped, whitespace stripped, no duplicates).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InputError
        Not UTF-8 text, a control character in an ID, a duplicate ID, or (unless
        ``allow_empty``) no ID at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample list not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not a UTF-8 text sample list (byte {err.start} cannot be "
                         "decoded). Give one sample ID a line.") from None
    ids = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            ids.append(clean_id(line, f"{path} line {number}"))
    check_unique(ids, str(path))
    if not ids and not allow_empty:
        raise InputError(f"{path} lists no samples. Give one sample ID a line.")
    return ids


def check_known(ids: Sequence[str], known: Iterable[str], source: str,
                where: str = "the prepared table") -> None:
    """Raise InputError naming the IDs of ``ids`` that are not in ``known``."""
    known = known if isinstance(known, (set, frozenset, dict)) else set(known)
    missing = [x for x in ids if x not in known]
    if missing:
        shown = show_ids(missing)[len(str(len(missing))) + 1:]
        raise InputError(f"{len(missing)} samples in {source} are not in {where} {shown}. "
                         "Regenerate the split or fix the sample IDs.")


def check_disjoint(lists: Mapping[str, Sequence[str]]) -> None:
    """Raise InputError when two of the named lists share a sample (train/val/test leakage)."""
    names = list(lists)
    for i, first in enumerate(names):
        seen = set(lists[first])
        for second in names[i + 1:]:
            shared = [x for x in lists[second] if x in seen]
            if shared:
                raise InputError(f"{show_ids(shared)} samples are in both {first} and "
                                 f"{second}. Regenerate the split so the lists do not overlap.")


def read_sample_lists(paths: Mapping[str, Optional[str | Path]],
                      known: Optional[Iterable[str]] = None,
                      where: str = "the prepared table") -> dict[str, list[str]]:
    """Read every given sample list and apply the one rule (see the module docstring).

    Parameters
    ----------
    paths : mapping of role (e.g. ``"--train-samples"``) to a path or None (skipped)
    known : the IDs the lists may name (e.g. the prepared table's samples); None skips that check

    Returns
    -------
    dict of role -> list of str, for the roles with a path, in file order.

    Raises
    ------
    FileNotFoundError, InputError
        See :func:`read_sample_list`, :func:`check_known` and :func:`check_disjoint`.
    """
    known = None if known is None else set(known)
    lists = {}
    for role, path in paths.items():
        if path is None:
            continue
        ids = read_sample_list(path)
        if known is not None:
            check_known(ids, known, f"{role} {path}", where)
        lists[role] = ids
    check_disjoint({f"{role} {paths[role]}": ids for role, ids in lists.items()})
    return lists
