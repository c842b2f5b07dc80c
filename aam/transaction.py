"""Transactions for a command's outputs: all of them appear on success, none on failure.

A command writes into a staging folder inside its output folder (``<output>/.aam-staging/``);
the staged entries are moved into the output folder only after the command succeeded
(completion markers such as ``prepare.json`` and ``metrics.json`` last). On any failure (bad input
found late, divergence, ``KeyboardInterrupt``, disk full) the staging folder is removed and the
output folder is as it was before the command (removed again when the command created it). Each
file is still written atomically (:mod:`aam.atomic`), so no half-written file is ever visible.

Checkpoints are the exception: ``checkpoints/`` is written straight into the output folder (the
staging folder links to it), so a run that fails or is killed after its first checkpoint can be
resumed with ``--resume-from <output>/checkpoints/last.pt``; the error says so.

The output folder is locked for the whole transaction (:mod:`aam.lock`). Leftovers of a killed
run (its staging folder, ``.*.tmp`` files of interrupted atomic writes, folders swapped out by
an interrupted commit) are removed by the next run into the same folder, with a warning naming
them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from aam.errors import InputError
from aam.lock import folder_lock

log = logging.getLogger(__name__)

STAGING_NAME = ".aam-staging"
#: Files written last on commit (removed first): their presence means the folder is complete.
MARKERS = ("prepare.json", "metrics.json", "splits.json", "predict_metrics.json")
#: Temporary files of :func:`aam.atomic.atomic_path`: ``.<name>.<random>.tmp``.
_ATOMIC_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")
#: Folders swapped out during a commit (removed right after; left only by a kill mid-commit).
_OLD = re.compile(r"^\..+\.old-[0-9a-f]{8}$")


@dataclass
class Transaction:
    """An open transaction: write into ``staging``; ``target`` is the real output folder."""

    target: Path
    staging: Path
    durable: tuple[str, ...] = ()
    owned: tuple[str, ...] = ()
    created: list[Path] = field(default_factory=list)

    def commit(self) -> None:
        """Move every staged entry into ``target`` (markers last), replacing older ones."""
        for name in self.durable:
            link = self.staging / name
            if link.is_symlink():
                link.unlink()
        entries = sorted(self.staging.iterdir(), key=lambda p: (p.name in MARKERS, p.name))
        for name in MARKERS:
            if (self.staging / name).exists():
                (self.target / name).unlink(missing_ok=True)
        produced = {p.name for p in entries}
        for name in self.owned:
            if name not in produced:
                _remove(self.target / name)
        for entry in entries:
            _move_into(entry, self.target / entry.name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        """Drop the staged outputs; remove folders this transaction created if left empty."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def kept_checkpoints(self) -> list[Path]:
        return [p for name in self.durable for p in (self.target / name).glob("last.pt")]


@contextlib.contextmanager
def output_transaction(target: str | os.PathLike, durable: Sequence[str] = (),
                       owned: Sequence[str] = ()) -> Iterator[Transaction]:
    """Lock ``target``, clean leftovers of killed runs, and yield a :class:`Transaction` whose
    ``staging`` folder the command writes into; committed when the block ends without error.

    Parameters
    ----------
    durable : names of sub-folders written straight into ``target`` (``checkpoints``)
    owned : names the command owns in ``target``: removed on commit when this run did not
        write them (e.g. ``unifrac.h5`` of an earlier ``aam prepare`` with a tree)

    Raises
    ------
    InputError
        ``target`` or a parent is an existing file, or another run holds its lock.
    """
    target = Path(os.path.abspath(target))
    _check_folder_path(target)
    created = _make_folders(target)
    try:
        with folder_lock(target):
            staging = target / STAGING_NAME
            _clean_leftovers(target, staging)
            staging.mkdir()
            tx = Transaction(target, staging, tuple(durable), tuple(owned), created)
            try:
                _link_durable(tx)
                yield tx
            except BaseException:
                kept = tx.kept_checkpoints()
                tx.abort()
                if kept:
                    _say_where(kept[0])
                raise
            tx.commit()
    except BaseException:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: kept checkpoints stay
        raise


def _say_where(checkpoint: Path) -> None:
    """Record on the exception where to resume from (the entry point adds it to the error line)."""
    err = sys.exc_info()[1]
    with contextlib.suppress(AttributeError, TypeError):
        err.resume_from = checkpoint
    log.warning("the outputs of this run were not written; its checkpoints are kept: resume "
                "with --resume-from %s", checkpoint)


def _check_folder_path(target: Path) -> None:
    for path in (target, *target.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise InputError(f"cannot use {target} as a folder: it or a parent is an "
                                 "existing file. Choose another path.")
            return


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return those created, outermost first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.is_dir():
            break
        missing.append(path)
    missing.reverse()
    made = []
    try:
        for path in missing:
            path.mkdir()
            made.append(path)
    except BaseException:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    return made


def _link_durable(tx: Transaction) -> None:
    for name in tx.durable:
        real = tx.target / name
        if not real.exists():
            real.mkdir()
            tx.created.append(real)
        os.symlink(os.path.join("..", name), tx.staging / name, target_is_directory=True)


def _clean_leftovers(target: Path, staging: Path) -> None:
    """Remove what a killed run left: its staging folder and interrupted atomic writes."""
    stale = [staging] if staging.exists() or staging.is_symlink() else []
    stale += [p for p in target.glob(".*.old-*") if _OLD.match(p.name)]
    stale += [p for p in _walk(target, depth=3) if _ATOMIC_TMP.match(p.name)]
    for path in stale:
        size = _size(path)
        _remove(path)
        log.warning("removed %s (%d bytes) left by an interrupted run", path, size)


def _walk(folder: Path, depth: int) -> list[Path]:
    """Files of ``folder`` down to ``depth`` levels (an output folder given as, say, a home
    folder is not scanned whole); symlinked folders and the staging folder are skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        level = len(Path(root).relative_to(folder).parts)
        dirs[:] = [d for d in dirs if d != STAGING_NAME and level < depth - 1
                   and not os.path.islink(os.path.join(root, d))]
        found += [Path(root) / name for name in files]
    return found


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _move_into(entry: Path, dest: Path) -> None:
    """Rename ``entry`` onto ``dest``; an existing folder is swapped out first."""
    if dest.is_dir() and not dest.is_symlink():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
        os.replace(entry, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(entry, dest)
