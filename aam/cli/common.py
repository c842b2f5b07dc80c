"""Shared entry-point plumbing: logging set-up, output transactions, and turning user errors
(and full, read-only or forbidden disks) into one line + exit 2."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from aam.errors import InputError
from aam.training.preemption import EXIT_PREEMPTED, Preempted
from aam.transaction import STAGING_NAME, output_transaction
from aam.validate import check_namespace

log = logging.getLogger("aam")
_ATOMIC_TMP = re.compile(r"/\.([^/\s]+?)\.[A-Za-z0-9_]{6,}\.tmp\b")


def setup_logging(verbose: bool = False) -> None:
    """Plain ``time level message`` lines on stderr; called once per process."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every command has."""
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks for input errors and log debug lines")


@dataclass(frozen=True)
class Outputs:
    """Where a command writes, for its transaction (:mod:`aam.transaction`).

    ``arg`` is the parsed argument holding the output folder (or, with ``is_file``, an output
    file whose folder is the transaction's); ``also`` names other file arguments written into
    the same folder; ``durable`` is passed to the transaction; ``writes`` names
    outputs checked before the command runs (a user's file there stops it at once, not after
    hours of training); ``defaults`` fills in derived paths from the real output path before
    it is redirected to the staging folder.
    """

    arg: str
    is_file: bool = False
    also: tuple[str, ...] = ()
    durable: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    defaults: Optional[Callable[[argparse.Namespace], None]] = None


def add_model_input_flags(parser: argparse.ArgumentParser, model_help: str,
                          data_help: str) -> None:
    """The trained model, prepared data and samples a model-reading command (predict,
    explain) takes."""
    parser.add_argument("--model", required=True, type=Path, help=model_help)
    parser.add_argument("--data-dir", required=True, type=Path, help=data_help)
    parser.add_argument("--samples", type=Path,
                        help="sample list, one ID a line (default: every prepared sample)")


def run(body: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
        argv: list[str] | None, outputs: Optional[Outputs] = None) -> int:
    """Parse ``argv``, run ``body(args)`` in an output transaction; user errors (and a full,
    read-only or forbidden disk) become one stderr line and exit code 2."""
    args = parser.parse_args(argv)
    args._command = parser.prog.split()[-1]
    setup_logging(getattr(args, "debug", False))
    try:
        check_namespace(args)  # no NaN/inf in any float flag
        with _transaction(args, outputs):
            code = body(args)
    except Preempted as err:
        print(f"{parser.prog}: stopped: {err}", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt as err:
        kept = getattr(err, "resume_from", None)
        note = f" Resume with --resume-from {kept}" if kept else ""
        print(f"{parser.prog}: error: interrupted; no output was written.{note}",
              file=sys.stderr)
        return 130
    except (InputError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        where = getattr(args, "_output_folder", None)
        line = _one_line(err, where)
        if where is not None:  # name the real folder, not the removed staging folder
            line = line.replace(str(Path(os.path.abspath(where)) / STAGING_NAME), str(where))
        line = _ATOMIC_TMP.sub(r"/\1", line)  # .model.pt.x8Ek2a.tmp -> model.pt
        kept = getattr(err, "resume_from", None)
        if kept is not None and str(kept) not in line:
            line += f" Checkpoints kept: --resume-from {kept}"
        print(f"{parser.prog}: error: {line}", file=sys.stderr)
        return 2
    return int(code or 0)


def continue_preempted(args: argparse.Namespace) -> None:
    """Without ``--resume-from``, continue from the output folder's checkpoint when a preempted
    run of this command left it (the same command, run again, picks up where it stopped)."""
    from aam.training.preemption import preempted_checkpoint

    folder = getattr(args, "_output_folder", None)
    if args.resume_from is not None or folder is None:
        return
    last = preempted_checkpoint(Path(folder))
    if last is not None:
        log.info("continuing the preempted run from %s", last)
        args.resume_from = last


def warn_unused_val_fraction(args: argparse.Namespace) -> None:
    """--val-fraction splits the prepared samples only when no sample lists are given."""
    if getattr(args, "val_fraction", None) is not None and args.train_samples is not None:
        log.warning("--val-fraction %g is ignored: --train-samples and --val-samples give the "
                    "split", args.val_fraction)


def _one_line(err: Exception, output: Optional[Path] = None) -> str:
    """The message of an input error or of an OSError (naming its path)."""
    message = " ".join(str(err).split()) or type(err).__name__  # always one line
    if not isinstance(err, OSError) or isinstance(err, FileNotFoundError) and not err.filename:
        return message
    path = err.filename or (f"into {output}" if output else "an output file")
    code = err.errno
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in message:
        return (f"no space left on the device while writing {path}. Free some space or write "
                "to another disk.")
    if code == errno.EROFS or "Read-only file system" in message:
        return f"cannot write {path}: read-only file system. Choose a writable output folder."
    if isinstance(err, PermissionError) and err.filename:
        return f"cannot write {path}: permission denied. Choose a writable output folder."
    if isinstance(err, (NotADirectoryError, FileExistsError)) and err.filename:
        return (f"cannot use {path} as a folder: it or a parent is an existing file. Choose "
                "another path.")
    if isinstance(err, FileNotFoundError):
        return message
    reason = err.strerror or message
    return f"{path}: {reason}" if err.filename else reason


@contextlib.contextmanager
def _transaction(args: argparse.Namespace, outputs: Optional[Outputs]):
    """Redirect the command's outputs to a staging folder; commit them after success."""
    path = getattr(args, outputs.arg, None) if outputs else None
    if path is None or int(os.environ.get("RANK", "0")) != 0:
        yield None  # no output, or a non-zero torchrun rank (rank 0 writes every file)
        return
    if outputs.defaults is not None:
        outputs.defaults(args)
    path = Path(path)
    folder = path.parent if outputs.is_file else path
    args._output_folder = folder  # named by disk errors that carry no file name
    files = _output_files(args, outputs, path, folder)
    command = parser_name(args)
    with output_transaction(folder, outputs.durable, files, command,
                            sole_owner=not outputs.is_file) as tx:
        setattr(args, outputs.arg, _staged(path, folder, tx.staging))
        for name in outputs.also:
            value = getattr(args, name, None)
            if value is not None:
                setattr(args, name, _staged(Path(value), folder, tx.staging))
        yield tx


def parser_name(args: argparse.Namespace) -> str:
    """The command's name (``train`` of ``aam train``), recorded beside what it writes."""
    return str(getattr(args, "_command", "") or "")


def _output_files(args: argparse.Namespace, outputs: Outputs, path: Path,
                  folder: Path) -> list[str]:
    """The file names a file-writing command will write into ``folder`` (checked before it runs:
    a user's file or folder there is never replaced)."""
    if not outputs.is_file:
        return list(outputs.writes)
    flag = "--" + outputs.arg.replace("_", "-")
    if path.is_dir():
        raise InputError(f"{flag} {path} is an existing folder; it is left as it is. Give a "
                         f"file path inside it, e.g. {path / 'predictions.tsv'}.")
    names = [path.name]
    for name in outputs.also:
        value = getattr(args, name, None)
        if value is None:
            continue
        if Path(os.path.abspath(value)).parent != Path(os.path.abspath(folder)):
            raise InputError(f"--{name.replace('_', '-')} {value} must be in the folder of "
                             f"{flag} ({folder}); give a path there.")
        names.append(Path(value).name)
    return names


def _staged(path: Path, folder: Path, staging: Path):
    """``path`` inside ``folder`` moved under ``staging`` (paths elsewhere stay as they are)."""
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    if absolute == base:
        return staging
    try:
        return staging / absolute.relative_to(base)
    except ValueError:
        return path
