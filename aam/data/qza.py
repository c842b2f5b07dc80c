"""QIIME 2 ``.qza`` artifacts read directly as zip files (no QIIME 2 needed).

An artifact is a zip holding ``<uuid>/metadata.yaml`` (with the semantic ``type:``) and the payload
under ``<uuid>/data/``: ``feature-table.biom`` (FeatureTable), ``dna-sequences.fasta``
(FeatureData[Sequence]) or ``tree.nwk`` (Phylogeny).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

from aam.errors import InputError
from aam.validate import check_archive_members


def is_qza(path: str | Path) -> bool:
    """True when ``path`` is a zip file (QIIME 2 artifacts are zips)."""
    return zipfile.is_zipfile(path)


def artifact_type(archive: zipfile.ZipFile) -> str:
    """The semantic type written in the artifact's ``metadata.yaml`` ('' when absent)."""
    for name in archive.namelist():
        if re.fullmatch(r"[^/]+/metadata\.yaml", name):
            check_archive_members([archive.getinfo(name)], str(archive.filename))
            text = archive.read(name).decode("utf-8", errors="replace")
            match = re.search(r"^type:\s*(.+)$", text, flags=re.MULTILINE)
            return match.group(1).strip() if match else ""
    return ""


def read_qza_member(path: str | Path, suffix: str, wanted: str) -> bytes:
    """Return the bytes of the payload file ``<uuid>/data/*<suffix>`` of a ``.qza`` artifact.

    Parameters
    ----------
    path : str or Path
        The ``.qza`` file.
    suffix : str
        File ending of the payload, e.g. ``".biom"``, ``".fasta"``, ``".nwk"``.
    wanted : str
        What the caller expects (for the error message), e.g. ``"FeatureTable"``.

    Raises
    ------
    InputError
        The artifact holds no such payload (for example a taxonomy artifact was given).
    """
    try:
        return _read_member(path, suffix, wanted)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError,
            RuntimeError, ValueError) as err:
        if isinstance(err, (InputError, PermissionError, FileNotFoundError)):
            raise
        raise InputError(f"{path} is a damaged zip/.qza ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:80] if str(err) else 'unreadable'}). "
                         f"Export the {wanted} artifact again.") from None


def _read_member(path: str | Path, suffix: str, wanted: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        pattern = re.compile(r"[^/]+/data/[^/]+" + re.escape(suffix))
        members = [name for name in archive.namelist() if pattern.fullmatch(name)]
        if not members:
            kind = artifact_type(archive) or "unknown"
            raise InputError(
                f"{path} is a zip but holds no data/*{suffix} (artifact type: {kind}); "
                f"pass a {wanted} artifact."
            )
        member = archive.getinfo(sorted(members)[0])
        check_archive_members([member], str(path))  # size and ratio before decompressing
        return archive.read(member)


def read_text_input(path: str | Path, what: str, suffix: str, wanted: str) -> str:
    """Text of a plain file, or of the ``*<suffix>`` payload when ``path`` is a ``.qza``.

    Raises ``FileNotFoundError("<what> file not found: <path>")`` when ``path`` is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if is_qza(path):
        payload = read_qza_member(path, suffix, wanted)
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: its data/*{suffix} is not UTF-8 text (byte {err.start}). "
                             f"Pass a {wanted} artifact.") from None
    return path.read_text(encoding="utf-8", errors="replace")
