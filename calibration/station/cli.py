"""``differad-station``: serve the field station on this machine.

Loopback (127.0.0.1) by default. Any other ``--host`` exposes it to the network and is refused
without a token (``--token`` or ``$DIFFERAD_STATION_TOKEN``); with one, every request must carry
it, so nothing listens on another interface unprotected.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from differad_edge.cli.common import OneLineParser, run_command

from differad_edge.errors import ConfigError

PROG = "differad-station"
TOKEN_ENV = "DIFFERAD_STATION_TOKEN"
MIN_TOKEN = 12


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token worth the name."""
    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(f"the station token must have at least {MIN_TOKEN} characters; choose a longer one")
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host} exposes the station beyond this machine; set a token with --token or {TOKEN_ENV} "
            "(every request must then carry it), or serve on 127.0.0.1"
        )


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="The DifferAD field station (calibration web app).")
    p.add_argument("--store", default=os.environ.get("DIFFERAD_STORE", "references"), help="reference store folder")
    p.add_argument("--workdir", default="station", help="folder for capture sessions and reports (default ./station)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"access token (default ${TOKEN_ENV}); required for a --host other than loopback",
    )
    p.add_argument("--config", help="calibration YAML (sections gates/build/validate)")
    p.add_argument("--engine", default="golden", help="engine of the spot check (default golden)")
    p.add_argument(
        "--trigger-topic",
        metavar="TOPIC",
        help="ROS topic (std_msgs/Empty) whose messages capture the "
        "live frame, e.g. /cell/part_ready (needs the ros extra)",
    )
    p.set_defaults(func=_serve)
    return p


def _serve(args: argparse.Namespace) -> int:
    check_exposure(args.host, args.token)
    try:
        import uvicorn
    except ImportError as e:
        from differad_edge.errors import missing_extra

        raise missing_extra("uvicorn", "station") from e
    from ..config import load_config
    from .app import StationSettings, create_app

    settings = StationSettings(
        store=Path(args.store),
        workdir=Path(args.workdir),
        token=args.token,
        config=load_config(args.config),
        engine=args.engine,
        trigger_topic=args.trigger_topic,
    )
    url = f"http://{args.host}:{args.port}/" + ("?token=..." if args.token else "")
    print(f"{PROG}: serving {url} (store {args.store}, sessions in {args.workdir})", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
