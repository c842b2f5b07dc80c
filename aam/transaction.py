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

A command replaces only what aam wrote: every output folder keeps a record of the names aam
commands wrote into it (``.aam-outputs.json``). An entry that exists but is not in that record
(a user's file or folder) is never replaced or removed: the command stops with one line naming
it before anything is moved. The commit is all-or-nothing: replaced entries are first moved
aside, then the new ones moved in; if any step fails, the old entries are put back.

The output folder is locked for the whole transaction (:mod:`aam.lock`). Leftovers of a killed
run (its staging folder, ``.*.tmp`` files of interrupted atomic writes, folders swapped out by
an interrupted commit) are removed by the next run into the same folder, with a warning naming
them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from aam.atomic import write_json
from aam.errors import InputError
from aam.lock import folder_lock

log = logging.getLogger(__name__)

STAGING_NAME = ".aam-staging"
#: The record of the names aam commands wrote into an output folder.
MANIFEST_NAME = ".aam-outputs.json"
#: Files written last on commit (removed first): their presence means the folder is complete.
MARKERS = ("prepare.json", "metrics.json", "splits.json", "predict_metrics.json")
#: Temporary files of :func:`aam.atomic.atomic_path`: ``.<name>.<random>.tmp``.
_ATOMIC_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")
#: Folders swapped out during a commit (removed right after; left only by a kill mid-commit).
_OLD = re.compile(r"^\..+\.old-[0-9a-f]{8}$")


@dataclass
class Transaction:
    """An open transaction: write into ``staging``; ``target`` is the real output folder.

    ``written`` maps the names aam commands wrote into ``target`` to the command that wrote
    them (its manifest): only those may be replaced or removed. With ``sole_owner`` (a command
    that writes a whole folder, not one file) the command owns its output set completely: a
    name it wrote before and no longer writes is removed on commit.
    """

    target: Path
    staging: Path
    durable: tuple[str, ...] = ()
    created: list[Path] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)
    command: str = ""
    sole_owner: bool = False

    def commit(self) -> None:
        """Move every staged entry into ``target`` (markers last), replacing older ones that
        aam wrote; all of it, or nothing when a step fails.

        Raises
        ------
        InputError
            A staged name exists in ``target`` but aam did not write it (nothing is moved).
        """
        for name in self.durable:
            link = self.staging / name
            if link.is_symlink():
                link.unlink()
        entries = sorted(self.staging.iterdir(), key=lambda p: (p.name in MARKERS, p.name))
        produced = {p.name for p in entries}
        for entry in entries:
            check_replaceable(self.target / entry.name, self.written, entry.is_dir())
        gone = set()
        if self.sole_owner and self.command:
            gone = {n for n, by in self.written.items() if by == self.command
                    and n not in produced and n not in self.durable}
        stale = [self.target / n for n in sorted(gone)]
        self.written.update({n: self.command for n in produced})
        for name in gone:
            self.written.pop(name, None)
        write_manifest(self.target, self.written)
        replaced = [self.target / p.name for p in entries] + stale
        replaced.sort(key=lambda p: p.name not in MARKERS)  # markers aside first
        _swap_in(entries, replaced, self.target)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        """Drop the staged outputs; remove folders this transaction created if left empty."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def kept_checkpoints(self) -> list[Path]:
        return [p for name in self.durable for p in (self.target / name).glob("last.pt")]


def read_manifest(folder: Path) -> dict[str, str]:
    """Name -> command of what aam commands wrote into ``folder`` (empty without a record)."""
    try:
        names = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))["written"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if isinstance(names, list):
        names = dict.fromkeys(names, "")
    if not isinstance(names, dict):
        return {}
    return {n: by if isinstance(by, str) else "" for n, by in names.items()
            if isinstance(n, str) and n and "/" not in n}


def write_manifest(folder: Path, written: dict[str, str]) -> None:
    write_json(folder / MANIFEST_NAME, {"written": dict(sorted(written.items()))})


def check_replaceable(dest: Path, written, is_dir: bool = False) -> None:
    """Refuse when ``dest`` exists but aam did not write it (a user's file, or a folder holding
    files), or when it is a folder where aam writes a file (or the reverse)."""
    if not (dest.exists() or dest.is_symlink()):
        return
    kind = "folder" if dest.is_dir() and not dest.is_symlink() else "file"
    if kind == "folder" and is_dir and _holds_no_files(dest):
        return  # nothing to lose: e.g. the empty folders Snakemake makes for a job's outputs
    if dest.name not in written:
        raise InputError(f"{dest} already exists and was not written by aam; it is left as it "
                         "is. Move it away or choose another output path.")
    if (kind == "folder") != is_dir:
        raise InputError(f"{dest} is a {kind}, but aam writes a "
                         f"{'folder' if is_dir else 'file'} there; it is left as it is. Move "
                         "it away or choose another output path.")


def _holds_no_files(folder: Path) -> bool:
    return not any(p.is_symlink() or not p.is_dir() for p in folder.rglob("*"))


def _swap_in(entries: list[Path], replaced: list[Path], target: Path) -> None:
    """Move ``replaced`` aside, then ``entries`` into ``target``; undo everything on failure."""
    aside: list[tuple[Path, Path]] = []
    moved: list[tuple[Path, Path]] = []
    try:
        for dest in replaced:
            if dest.exists() or dest.is_symlink():
                old = target / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(dest, old)
                aside.append((dest, old))
        for entry in entries:
            dest = target / entry.name
            os.replace(entry, dest)
            moved.append((entry, dest))
    except BaseException:
        for entry, dest in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(dest, entry)
        for dest, old in reversed(aside):
            with contextlib.suppress(OSError):
                os.replace(old, dest)
        raise
    for _, old in aside:
        _remove(old)


@contextlib.contextmanager
def output_transaction(target: str | os.PathLike, durable: Sequence[str] = (),
                       files: Sequence[str] = (), command: str = "",
                       sole_owner: bool = False) -> Iterator[Transaction]:
    """Lock ``target``, clean leftovers of killed runs, and yield a :class:`Transaction` whose
    ``staging`` folder the command writes into; committed when the block ends without error.

    Parameters
    ----------
    durable : names of sub-folders written straight into ``target`` (``checkpoints``)
    files : names of files the command will write, checked before it starts
    command : the command's name, recorded in the manifest beside each name it writes
    sole_owner : the command owns its output set in ``target`` completely (see
        :class:`Transaction`): e.g. ``taxonomy.tsv`` of an earlier ``aam prepare`` with a
        taxonomy goes when a rerun has none

    Raises
    ------
    InputError
        ``target`` or a parent is an existing file, another run holds its lock, or a name the
        command writes holds something aam did not write.
    """
    target = Path(os.path.abspath(target))
    _check_folder_path(target)
    created = _make_folders(target)
    recorded = (target / MANIFEST_NAME).exists()
    try:
        with folder_lock(target):
            written = read_manifest(target)
            for name in files:
                check_replaceable(target / name, written)
            for name in durable:
                check_replaceable(target / name, written, is_dir=True)
            staging = target / STAGING_NAME
            _clean_leftovers(target, staging, written)
            staging.mkdir()
            tx = Transaction(target, staging, tuple(durable), created, written, command,
                             sole_owner)
            try:
                _link_durable(tx)
                yield tx
                tx.commit()
            except BaseException:
                kept = tx.kept_checkpoints()
                tx.abort()
                if kept:
                    _say_where(kept[0])
                raise
    except BaseException:
        _remove_empty(created)  # only when empty: kept checkpoints stay
        _forget_removed(target, durable, recorded)
        _remove_empty(created)  # the output folder too, once its manifest is gone
        raise


def _remove_empty(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _forget_removed(target: Path, durable: Sequence[str], recorded: bool) -> None:
    """After a failed run, drop from the manifest the durable folders it created and removed
    again (empty), so the folder is as it was; the manifest goes when it had no record before."""
    if not target.is_dir():
        return
    written = read_manifest(target)
    kept = {n: by for n, by in written.items() if n not in durable or (target / n).exists()}
    with contextlib.suppress(OSError):
        if kept == written:
            return
        if kept or recorded:
            write_manifest(target, kept)
        else:
            (target / MANIFEST_NAME).unlink()


def _say_where(checkpoint: Path) -> None:
    """Record on the exception where to resume from (the entry point adds it to the error line)."""
    err = sys.exc_info()[1]
    if err is not None:
        with contextlib.suppress(AttributeError, TypeError):
            setattr(err, "resume_from", checkpoint)
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
        if name not in tx.written:
            tx.written[name] = tx.command  # now: a failed run's checkpoints are aam's to resume
            write_manifest(tx.target, tx.written)
        os.symlink(os.path.join("..", name), tx.staging / name, target_is_directory=True)


def _clean_leftovers(target: Path, staging: Path, written: dict[str, str]) -> None:
    """Remove what a killed run left: its staging folder, entries an interrupted commit moved
    aside, and interrupted atomic writes inside folders aam wrote (never a user's files)."""
    stale = [staging] if staging.exists() or staging.is_symlink() else []
    stale += [p for p in target.glob(".*.old-*")
              if _OLD.match(p.name) and p.name[1:].rsplit(".old-", 1)[0] in written]
    stale += [p for p in target.glob(".*.tmp") if _ATOMIC_TMP.match(p.name)
              and _tmp_of(p.name) in {*written, MANIFEST_NAME}]
    for name in sorted(written):
        folder = target / name
        if folder.is_dir() and not folder.is_symlink():
            stale += [p for p in _walk(folder, depth=2) if _ATOMIC_TMP.match(p.name)]
    for path in stale:
        size = _size(path)
        _remove(path)
        log.warning("removed %s (%d bytes) left by an interrupted run", path, size)


def _tmp_of(name: str) -> str:
    """The file an atomic write's temporary ``.<name>.<random>.tmp`` was for."""
    return name[1:-len(".tmp")].rsplit(".", 1)[0]


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
