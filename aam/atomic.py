"""Crash-safe file writing: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash or exception before the end leaves no file at ``path`` (the temporary is removed),
    so a killed job never leaves an output that looks finished.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except RuntimeError as err:  # h5py and torch.save report a failed write this way
            raise _as_os_error(err, path) from err
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; match a plain open()
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _as_os_error(err: RuntimeError, path: Path) -> Exception:
    """An OSError naming ``path`` for a library's failed write (errno from its message, else
    ENOSPC when the disk is full); other RuntimeErrors are returned unchanged."""
    text = str(err)
    found = re.search(r"errno = (\d+)", text)
    if found:
        code = int(found.group(1))
    elif any(sign in text for sign in ("write failed", "failed writing", "unexpected pos",
                                       "PytorchStreamWriter")):
        code = errno.ENOSPC if _disk_full(path.parent) else errno.EIO
    else:
        return err
    return OSError(code, os.strerror(code), str(path))


def _disk_full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 1024 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_plain) + "\n")


def write_lines(path: str | os.PathLike, lines) -> None:
    """Write one item per line to ``path`` atomically."""
    write_text(path, "".join(f"{line}\n" for line in lines))


def _plain(obj):
    # numpy scalars and paths in metrics/config dicts
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
