"""What every engine config shares: fields declared with :func:`option` (default, help text, range)
and one validation of their types and ranges, so the CLI (``--engine-option``), the ROS node's nested
parameters and Python keywords all meet the same checks and read the same help.

Each engine keeps its own frozen dataclass beside it (``GoldenConfig`` in ``configuration_golden.py``,
``VLMConfig`` in ``configuration_vlm.py``, ``OnnxConfig`` in ``configuration_onnx.py``) and names it
as ``Engine.config_type``; this module holds no engine knowledge.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Literal, TypeVar, get_args, get_origin

from ..errors import ConfigError

C = TypeVar("C")


def option(default: Any, help: str, *, range: tuple[float, float] | None = None, dynamic: bool = False) -> Any:
    """A config field with its help text and, for numbers, its closed range ``(lo, hi)``.

    ``dynamic``: the ROS node may change it on a running engine (else it is read at configure only:
    changing it means loading another model or session).
    """
    return dataclasses.field(default=default, metadata={"help": help, "range": range, "dynamic": dynamic})


def refuse_fixed_changes(current: Any, new: Any, fixed: Sequence[str], why: str) -> None:
    """A running engine takes a new config whole; refuse one that changes a field read only when the
    engine loaded (``why`` says what that field chose and what to do instead)."""
    if current is None:
        return
    changed = [k for k in fixed if getattr(new, k) != getattr(current, k)]
    if changed:
        raise ConfigError(f"{', '.join(changed)} {why}")


def option_names(config_type: type) -> list[str]:
    """The option names of a config type (its dataclass fields, in declaration order)."""
    return [f.name for f in dataclasses.fields(config_type)]


def check_option_names(engine: str, given: Mapping[str, Any], valid: list[str]) -> None:
    """Refuse unknown option names, naming the valid ones and the closest match (a typo costs no load)."""
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, valid, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(f"engine {engine!r} has no option {', '.join(hints)}; valid options: {', '.join(sorted(valid))}")


def make_config(config_type: type[C], engine: str, config: C | None, options: Mapping[str, Any]) -> C:
    """``config`` (or the defaults) with ``options`` applied: how an engine built from keywords gets
    its typed config. Unknown names are refused with the closest match."""
    check_option_names(engine, options, option_names(config_type))
    if config is None:
        return config_type(**options)
    if not isinstance(config, config_type):
        raise ConfigError(
            f"{engine} config must be a {config_type.__name__}, got {type(config).__name__}; "
            f"build one with {config_type.__name__}(...) or pass the options as keywords"
        )
    return dataclasses.replace(config, **options) if options else config  # type: ignore[type-var]


def check_fields(config: Any, engine: str) -> None:
    """Type and range of every field declared with :func:`option`, from its annotation: ``bool``,
    ``int``, ``float``, ``str``, a ``Literal`` of strings or a ``StrEnum``, each optionally ``| None``.
    A plain string given for an enum field becomes its member here (the one place it is coerced).
    Other types (nested policies, tuples) are the config's own ``__post_init__``'s to check."""
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        kind, choices, optional = _kinds(type(config))[f.name]
        value = getattr(config, f.name)
        if value is None and optional:
            continue
        problem = _problem(value, kind, choices, f.metadata.get("range"))
        if problem:
            unset = " or None" if optional else ""
            raise ConfigError(f"{engine} {f.name}={value!r} {problem}{unset}")
        enum = _enums(type(config)).get(f.name)
        if enum is not None:
            object.__setattr__(config, f.name, enum(value))


def _problem(value: Any, kind: Any, choices: tuple[str, ...], rng: tuple[float, float] | None) -> str:
    """Why ``value`` is no valid ``kind`` in ``rng`` (empty: it is)."""
    where = f" in [{rng[0]:g}, {rng[1]:g}]" if rng is not None else ""
    if choices:
        return "" if value in choices else f"is not supported; expected one of: {', '.join(choices)}"
    if kind is bool:
        return "" if isinstance(value, bool) else "must be true or false"
    if kind is str:
        return "" if isinstance(value, str) else "must be a string"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (rng is not None and not rng[0] <= value <= rng[1]):
            return f"must be an integer{where}"
        return ""
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (rng is not None and not rng[0] <= value <= rng[1]):
            return f"must be a number{where}"
        return ""
    return ""


_KINDS: dict[type, dict[str, tuple[Any, tuple[str, ...], bool]]] = {}


_ENUMS: dict[type, dict[str, type[Enum]]] = {}


def _enums(config_type: type) -> dict[str, type[Enum]]:
    """field -> its ``StrEnum`` type, for the fields annotated with one, optionally ``| None`` (once per type)."""
    known = _ENUMS.get(config_type)
    if known is None:
        known = {}
        for name, hint in typing.get_type_hints(config_type).items():
            core = [a for a in get_args(hint) if a is not type(None)] or [hint]
            if len(core) == 1 and _is_str_enum(core[0]):
                known[name] = core[0]
        _ENUMS[config_type] = known
    return known


def _is_str_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, str) and issubclass(hint, Enum)


def _kinds(config_type: type) -> dict[str, tuple[Any, tuple[str, ...], bool]]:
    """field -> (scalar kind or None, Literal choices, optional) from the annotations (once per type)."""
    known = _KINDS.get(config_type)
    if known is not None:
        return known
    hints = typing.get_type_hints(config_type)
    out: dict[str, tuple[Any, tuple[str, ...], bool]] = {}
    for name, hint in hints.items():
        args = get_args(hint) if get_origin(hint) is not Literal else ()
        optional = type(None) in args
        core = [a for a in args if a is not type(None)] if args else [hint]
        kind: Any = core[0] if len(core) == 1 else None
        choices: tuple[str, ...] = ()
        if get_origin(kind) is Literal:
            choices, kind = tuple(str(a) for a in get_args(kind)), str
        elif _is_str_enum(kind):
            choices, kind = tuple(str(m.value) for m in kind), str
        out[name] = (kind if kind in (bool, int, float, str) else None, choices, optional)
    _KINDS[config_type] = out
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (nested dataclasses as dicts, tuples as lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Enum):
        return value.value  # the plain name: YAML and JSON writers take it as a string
    return value


__all__ = ["check_fields", "check_option_names", "config_to_dict", "make_config", "option", "option_names"]
