"""Entry point of ``differad``: argument parsing; errors become exit codes in ``cli.common``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .common import DIFFERAD as PROG
from .common import OneLineParser, run_command


def build_parser() -> argparse.ArgumentParser:
    from . import demo, dev, engines, evaluate, inspect

    parser = OneLineParser(
        prog=PROG,
        description="DifferAD Edge: find the defect in a target image by comparing it with a good reference.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in (inspect, evaluate, demo, engines, dev):
        module.add_parser(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


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
    return run_command(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
