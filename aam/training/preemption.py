"""Preemption: stop cleanly on SIGTERM / SIGUSR1 and continue where the run stopped.

A cluster that ends a job (its time limit, a preemptible partition) sends SIGTERM, or the signal
asked for with ``sbatch --signal``, and kills the job a little later. While :func:`watch` is
active the first such signal only sets a flag; the training loop finishes the optimiser step it
is in, writes a resumable ``checkpoints/last.pt`` that records the position inside the epoch
(``resume_batch``) and the RNG state, and raises :class:`Preempted`; the command exits with
:data:`EXIT_PREEMPTED`. Running the same command again continues from that checkpoint by itself
(:func:`preempted_checkpoint`) and ends with the same model as an uninterrupted run.

Signals do not always reach the training process on a cluster (a workflow manager may run it
under its own process, which the scheduler signals instead), so a run can also stop itself:
``--stop-after-minutes M`` (``train.stop_after_minutes``) stops the same way once M minutes
have passed since the process started; the workflow sets it from the job's ``runtime``.

For deterministic tests, ``AAM_PREEMPT_AT_STEP=N`` makes the loop send itself SIGTERM after
optimiser step N (a real signal, through the same handler).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

log = logging.getLogger(__name__)

#: Exit code of a preempted command (``EX_TEMPFAIL``: run it again to continue).
EXIT_PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
TEST_HOOK = "AAM_PREEMPT_AT_STEP"

_received: list[int] = []
_STARTED = time.monotonic()  # imported by every entry point: about the process start


class Preempted(Exception):
    """Training stopped (a signal, or its time limit) after writing a resumable checkpoint."""

    def __init__(self, reason: str, checkpoint: Optional[Path], epoch: int, batch: int) -> None:
        saved = (f"; resumable checkpoint {checkpoint}: run the same command again to continue"
                 if checkpoint else "; no checkpoint could be written")
        super().__init__(f"stopped by {reason} in epoch {epoch} after batch {batch}{saved}.")
        self.checkpoint = checkpoint


def _handler(signum, _frame) -> None:
    if not _received:
        log.warning("received %s: finishing the current step, then writing a checkpoint",
                    signal.Signals(signum).name)
    _received.append(signum)


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """Turn SIGTERM and SIGUSR1 into a stop request for the block (main thread only; elsewhere
    the signals keep their handlers)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        _received.clear()


def requested(stop_after_minutes: float = 0.0) -> Optional[str]:
    """Why to stop now: the signal received since :func:`watch` began, or the time limit once
    ``stop_after_minutes`` (0: none) have passed since the process started; else None."""
    if _received:
        return signal.Signals(_received[0]).name
    if stop_after_minutes and time.monotonic() - _STARTED >= 60 * stop_after_minutes:
        return f"the time limit (--stop-after-minutes {stop_after_minutes:g})"
    return None


def test_hook(global_step: int) -> None:
    """Deliver SIGTERM to this process after step ``AAM_PREEMPT_AT_STEP`` (tests only)."""
    at = os.environ.get(TEST_HOOK)
    if at and global_step == int(at) and not _received:
        os.kill(os.getpid(), signal.SIGTERM)


def preempted_checkpoint(output_dir: Path) -> Optional[Path]:
    """``output_dir/checkpoints/last.pt`` when a preempted run left it there, else None (also
    for an unreadable file, with a warning: the run then starts afresh)."""
    from aam.errors import InputError
    from aam.training.checkpoint import load_checkpoint

    last = Path(output_dir) / "checkpoints" / "last.pt"
    if not last.is_file():
        return None
    try:
        return last if load_checkpoint(last).preempted else None
    except InputError as err:
        log.warning("not continuing from %s: %s", last, err)
        return None
