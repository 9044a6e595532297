"""The ``differad`` command: a thin edge over the core (inspect, eval, demo, dev make-model).

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
``main`` turns every expected failure into one ``differad: error: ...`` line and exit code 2.
"""
