"""``differad engines [NAME] [--yaml]``: every engine's options, read from its typed config.

The options ``--engine-option`` / ``--engine-config`` (and the ROS ``<engine>.*`` parameters) accept
are the fields of ``Engine.config_type``; this prints them with their default, range and help, or as
a commented YAML file to edit and pass back as ``--engine-config``.
"""

from __future__ import annotations

import argparse
import dataclasses

import yaml

from ..engines import ENGINES, engine_class


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "engines",
        help="list the engines and the options of each (for --engine-option / --engine-config)",
        description="The options come from each engine's typed config: name, default, range, help.",
    )
    p.add_argument("name", nargs="?", choices=sorted(ENGINES), help="one engine (default: all)")
    p.add_argument("--yaml", action="store_true", help="print a commented --engine-config file of the defaults")
    p.set_defaults(func=run)


def describe(name: str) -> list[str]:
    """One line per option of engine ``name``: ``key = default  [lo, hi]  help``."""
    config = engine_class(name).config_type
    assert config is not None, f"engine {name!r} has no config_type"
    defaults = config().to_dict()  # plain values: enum names, nested policies as mappings
    lines = [f"{name}  ({config.__name__})"]
    for f in dataclasses.fields(config):
        rng = f.metadata.get("range")
        span = f"  [{rng[0]:g}, {rng[1]:g}]" if rng else ""
        live = "" if f.metadata.get("dynamic") else "  (read at load)"
        lines.append(f"  {f.name} = {defaults[f.name]!r}{span}{live}  {f.metadata.get('help', '')}")
    return lines


def as_yaml(name: str) -> str:
    """The defaults of engine ``name`` as a ``--engine-config`` file, each option's help as a comment."""
    config = engine_class(name).config_type
    assert config is not None, f"engine {name!r} has no config_type"
    out = [f"# differad --engine {name} --engine-config FILE.yaml ({config.__name__}); keep only what you change"]
    defaults = config().to_dict()
    for f in dataclasses.fields(config):
        value = defaults[f.name]
        if not isinstance(value, str | int | float | bool | list | dict | type(None)):
            continue  # not expressible in YAML (e.g. an array mask): set it in Python
        out.append(f"# {f.metadata.get('help', '')}")
        out.append(yaml.safe_dump({f.name: value}, sort_keys=False).strip())
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else sorted(ENGINES)
    if args.yaml:
        print("\n".join(as_yaml(n) for n in names), end="")
    else:
        print("\n\n".join("\n".join(describe(n)) for n in names))
    return 0
