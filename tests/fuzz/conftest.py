"""The fuzz suite of issue 13: every entry point the SDK reads data through, fed bad input.

Each case must end in the entry point's one typed error (``DifferadError``; for a CLI one
``PROG: error:`` line and exit 2), with no traceback, no hang (timeouts), nothing written outside
the target and no existing data changed. ``tally(area)`` counts the cases tried per area; the totals
are printed at the end of the run (docs/reliability.md quotes them).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

#: Examples per property test; CI runs the default, ``DIFFERAD_FUZZ_EXAMPLES=1000`` a long local run.
EXAMPLES = int(os.environ.get("DIFFERAD_FUZZ_EXAMPLES", "60"))
settings.register_profile(
    "fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("fuzz")

CASES: Counter[str] = Counter()


def tally(area: str, n: int = 1) -> None:
    CASES[area] += n


@pytest.fixture
def count():
    return tally


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if CASES:
        terminalreporter.write_line(
            "fuzz cases tried: "
            + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
            + f" (total {sum(CASES.values())})"
        )
