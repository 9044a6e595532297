"""Hostile JSON values and bytes shared by the fuzz tests."""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Values that broke entry points in the audit, and their relatives.
NASTY_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    1.5,
    float("inf"),
    "",
    "x",
    "../../etc/passwd",
    "/etc/passwd",
    [],
    [1],
    {},
    {"a": 1},
    10**400,
    "9" * 400,
    [[[[[]]]]],
    {"files": "x"},
    [None] * 3,
    "\udcff",
]
#: Raw texts of files: wrong types, deep nesting, huge numbers, invalid UTF-8, truncation.
NASTY_FILES: list[bytes] = [
    b"",
    b"\xff\n",
    b"[]",
    b"{}",
    b"null",
    b"1",
    b'"x"',
    b"[" * 2000,
    b"{" * 1000,
    b'{"a":' * 1500,
    b"9" * 5000,
    b"1e99999",
    b"NaN",
    b'{"format": 2}',
    b'{"format": 1}',
    b"\x00" * 16,
    b'{"version": "v0001"',
    b'{"\xff": 1}',
    b"[" * 100_000,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(NASTY_VALUES[:-1]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def dumps(value: object) -> bytes:
    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogateescape")
    except (ValueError, TypeError):  # an int too large for json.dumps' str conversion
        return b'{"x": ' + b"9" * 400 + b"}"


def mutate(data: dict, path: list[str], value: object) -> dict:
    """A copy of ``data`` with ``value`` put at the key path (created where missing)."""
    out = json.loads(json.dumps(data))
    node = out
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return out
