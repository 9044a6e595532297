"""Entry point of ``differad``: argument parsing and the one place errors become exit codes.

Expected failures (any ``DifferadError``, a missing file, a missing optional package) print one line
on stderr and exit 2, because a person at a terminal or a script in a cell needs the cause, not a
traceback. Set ``DIFFERAD_DEBUG=1`` to get the traceback anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import DifferadError

PROG = "differad"
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import demo, dev, evaluate, inspect

    parser = OneLineParser(
        prog=PROG,
        description="DifferAD Edge: find the defect in a target image by comparing it with a good reference.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in (inspect, evaluate, demo, dev):
        module.add_parser(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def _os_error_message(e: OSError) -> str:
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"


def _is_internal_import_bug(e: BaseException) -> bool:
    """A missing *SDK* module is a bug to show in full; a missing third-party package is user-fixable."""
    return isinstance(e, ModuleNotFoundError) and (e.name or "").startswith("differad_edge")


def _quiet_opencv() -> None:
    """OpenCV's C++ warnings about a corrupt file would bury the one error line; the SDK raises its own."""
    if "OPENCV_LOG_LEVEL" in os.environ:  # the user asked for OpenCV's own logging
        return
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR if os.environ.get("DIFFERAD_DEBUG") else 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``differad``; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    _quiet_opencv()
    debug = os.environ.get("DIFFERAD_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `differad inspect ... --json | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit flush
        return 0
    except (DifferadError, OSError, ImportError) as e:
        if debug or _is_internal_import_bug(e):
            raise
        if isinstance(e, OSError) and not isinstance(e, DifferadError):
            return _fail(_os_error_message(e))
        return _fail(str(e) or type(e).__name__)


if __name__ == "__main__":
    sys.exit(main())
