"""One writer per output folder: an advisory ``fcntl`` lock on a file beside the folder.

The lock file ``<folder>/.aam.lock`` records ``host``, ``pid`` and the start time of the holder; it
is removed when the run ends. A second run into the same folder stops at once with a one-line error
naming the holder. The kernel drops an ``fcntl`` lock when its process dies, so a lock left by a
killed run is simply taken over; the record it left is reported as a warning.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from aam.errors import InputError

log = logging.getLogger(__name__)


LOCK_NAME = ".aam.lock"


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder`` (which must exist): ``<folder>/.aam.lock``."""
    return Path(folder) / LOCK_NAME


def _holder(text: str) -> dict:
    try:
        info = json.loads(text)
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Hold the advisory lock of ``folder`` for the duration of the block.

    Raises
    ------
    InputError
        Another process (named by host and PID) holds the lock.
    """
    path = lock_path(folder)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            info = _holder(_read(fd))
            os.close(fd)
            since = info.get("since")
            when = time.strftime(" since %H:%M:%S", time.localtime(since)) if since else ""
            raise InputError(f"{folder} is being written by another aam run (host "
                             f"{info.get('host', '?')}, PID {info.get('pid', '?')}{when}). Wait "
                             f"for it to finish or choose another {what}.") from None
        # the file may have been unlinked by its last holder between open and flock: retry
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        _report_stale(_holder(_read(fd)), folder)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # closing drops the lock


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
    return ""


def _report_stale(info: dict, folder) -> None:
    if not info:
        return
    here = info.get("host") == socket.gethostname()
    state = "no longer running" if here and not _alive(info.get("pid")) else "not holding it"
    log.warning("taking over the lock of %s left by PID %s on %s (%s)", folder, info.get("pid"),
                info.get("host"), state)
