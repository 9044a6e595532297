"""Engine options as nested ROS parameters (``golden.k``, ``golden.min_area``, ``vlm.max_new_tokens``).

Declared from the engine's own typed configuration (``Engine.config_type``), not from a copy: the
fields of ``GoldenConfig``, ``VLMConfig`` and ``OnnxConfig`` with their type, default, description
and range (only a field's ``option(help=, range=, dynamic=)`` metadata), so ``ros2 param describe``
and rqt_reconfigure show and enforce them. A field marked ``dynamic`` (every golden one) may change
on a running node; the model engines' are read at configure. Pure (no rclpy): the node turns :class:`EngineParam` into declarations.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, get_args, get_origin

#: Fields that are not per-frame options of a running node (or not expressible as one scalar).
SKIPPED = {"care_mask", "method", "model", "size_policy", "providers", "tensorrt_cache_dir"}
#: ``None``-able numbers are declared as numbers with this "unset" value (documented per parameter).
UNSET = -1


@dataclass(frozen=True)
class EngineParam:
    """One nested parameter: ``<engine>.<field>``."""

    engine: str
    field: str
    default: Any  # bool, int, float or str (never None)
    description: str
    choices: tuple[str, ...] = ()
    range: tuple[float, float] | None = None
    optional: bool = False  # None in the config is UNSET here
    dynamic: bool = True  # settable at run time (else read at configure only)

    @property
    def name(self) -> str:
        return f"{self.engine}.{self.field}"

    def to_option(self, value: Any) -> Any:
        """The engine keyword value of parameter value ``value``."""
        if self.optional and isinstance(value, (int, float)) and value == UNSET:
            return None
        if isinstance(self.default, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


def engine_params(engine: str) -> list[EngineParam]:
    """The nested parameters of ``engine``: the scalar fields of its typed ``config_type``."""
    from differad_edge.engines import ENGINES, engine_class

    if engine not in ENGINES:
        return []
    try:
        cls = engine_class(engine)
    except ImportError:  # the engine's packages are missing: the node reports that at configure
        return []
    config = cls.config_type
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"engine {engine!r} declares no typed config_type (a dataclass); every engine needs one")
    return _from_dataclass(engine, config)


def _from_dataclass(engine: str, cls: type) -> list[EngineParam]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in SKIPPED or f.default is dataclasses.MISSING:
            continue
        meta = f.metadata
        p = _param(
            engine,
            f.name,
            hints.get(f.name),
            f.default,
            meta.get("help", ""),
            dynamic=meta.get("dynamic", True),
            rng=meta.get("range"),
        )
        if p is not None:
            out.append(p)
    return out


def _param(
    engine: str,
    name: str,
    hint: Any,
    default: Any,
    doc: str,
    dynamic: bool = True,
    rng: tuple[float, float] | None = None,
) -> EngineParam | None:
    """An EngineParam for a scalar field (bool, int, float, str or a Literal of str), else None."""
    args = get_args(hint)
    optional = type(None) in args
    core = [a for a in args if a is not type(None)] if optional else [hint]
    kind = core[0] if len(core) == 1 else None
    choices: tuple[str, ...] = ()
    if get_origin(kind) is typing.Literal:
        choices = tuple(str(a) for a in get_args(kind))
        kind = str
    if kind not in (bool, int, float, str):
        return None
    if default is None:
        if not optional or kind is str or kind is bool:
            return None
        default = float(UNSET) if kind is float else UNSET
        doc = f"{doc} ({UNSET}: unset)".strip()
    elif kind is float:
        default = float(default)
    desc = doc or f"{engine} option {name}"
    if choices:
        desc += f" (one of: {', '.join(choices)})"
    if rng is not None and optional:
        rng = (min(rng[0], UNSET), rng[1])
    return EngineParam(engine, name, default, desc, choices, rng, optional, dynamic)


def explicit_options(params: list[EngineParam], values: dict[str, Any], overridden: set[str]) -> dict[str, Any]:
    """Engine keywords of the nested parameters the user set: those given at start (``overridden``:
    parameter names) or differing from their default. Options left alone must not reach the engine,
    whose thresholds tuned by calibration then apply (an explicit option wins over them)."""
    out = {}
    for p in params:
        if p.name not in values:
            continue
        value = values[p.name]
        if p.name in overridden or value != p.default:
            out[p.field] = p.to_option(value)
    return out


__all__ = ["EngineParam", "engine_params", "explicit_options"]
