"""Shared entry-point plumbing: logging set-up and turning user errors into one line + exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from aam.errors import InputError
from aam.validate import check_namespace

log = logging.getLogger("aam")


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


def run(body: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
        argv: list[str] | None) -> int:
    """Parse ``argv``, run ``body(args)``; user errors become one stderr line and exit code 2."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "debug", False))
    try:
        check_namespace(args)  # no NaN/inf in any float flag
        code = body(args)
    except (InputError, FileNotFoundError, PermissionError, IsADirectoryError,
            NotADirectoryError, FileExistsError) as err:
        if getattr(args, "debug", False):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, PermissionError) and err.filename:
            message = (f"cannot write {err.filename}: permission denied. "
                       "Choose a writable output folder.")
        elif isinstance(err, (NotADirectoryError, FileExistsError)) and err.filename:
            message = (f"cannot use {err.filename} as a folder: it or a parent is an existing "
                       "file. Choose another path.")
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)
