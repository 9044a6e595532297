"""What every DifferAD command shares: one-line usage errors and the one place where expected
failures become exit code 2 (``differad``, ``differad-train``, ``differad-export``, ``differad-calibrate``).

A person at a terminal or a script in a cell needs the cause, not a traceback; ``DIFFERAD_DEBUG=1``
shows the traceback anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from ..errors import ConfigError, DifferadError

EXIT_ERROR = 2
#: ``differad inspect`` / ``eval``: everything ran, but some target was NOT_INSPECTED (a script must not
#: read that run as "all parts good").
EXIT_NOT_INSPECTED = 3
EXIT_INTERRUPTED = 130
#: Name of the main command (``differad``), the prefix of its error lines.
DIFFERAD = "differad"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error of the commands."""

    def error(self, message: str) -> NoReturn:
        prog = self.prog.split()[0]
        self.exit(EXIT_ERROR, f"{prog}: error: {message} (see '{self.prog} --help')\n")


def debug_enabled() -> bool:
    return os.environ.get("DIFFERAD_DEBUG", "") not in ("", "0")


def fail(prog: str, message: str) -> int:
    """Print ``PROG: error: message`` on one line and return the error exit code."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_ERROR


def require_out_dir(path: Path | None, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be created *before* the work, so a long run does not end
    in an error after all its results were computed."""
    if path is None:
        return
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{flag} {path}: {p} exists and is not a folder; pass a folder path")
            return


def error_message(e: BaseException) -> str:
    """The one-line text of an expected failure (an OSError names its file)."""
    if isinstance(e, OSError) and not isinstance(e, DifferadError) and e.filename:
        return f"{e.strerror or e}: {e.filename}"
    return str(e) or type(e).__name__


def _is_internal_import_bug(e: BaseException) -> bool:
    """A missing *SDK* module is a bug to show in full; a missing third-party package is user-fixable."""
    return isinstance(e, ModuleNotFoundError) and (e.name or "").startswith("differad_edge")


def _tolerant_streams() -> None:
    """A file name that is not valid UTF-8 (or a strict-ASCII terminal) must not crash a print and lose
    the results: unprintable characters are written as backslash escapes instead."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def run_command(prog: str, func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand; expected failures -> one line + exit 2, Ctrl-C -> 130."""
    _tolerant_streams()
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... --json | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit flush
        return 0
    except (DifferadError, OSError, ImportError) as e:
        if debug_enabled() or _is_internal_import_bug(e):
            raise
        return fail(prog, error_message(e))
