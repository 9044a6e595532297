"""The inspector node's configuration: one typed dataclass, validated in one place.

The node declares one ROS parameter per field (same name, same default), reads them once and builds
:class:`InspectorParams`; an invalid value raises :class:`ConfigError` naming the value, what was
expected and the fix, and the node exits non-zero.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from differad_edge.engines import ENGINES
from differad_edge.errors import ConfigError

from .spin import EXECUTORS

#: Same rule as the reference store's ids.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ALIGN_MODES = ("none", "translation", "euclidean", "affine", "homography")
INPUTS = ("raw", "compressed")
QOS_PROFILES = ("sensor_data", "reliable")
ENGINES_NEEDING_MODEL = ("vlm", "onnx")


@dataclass(frozen=True)
class InspectorParams:
    """Parameters of node ``inspector`` (``config/inspect.yaml`` documents each)."""

    store: str = ""
    product_id: str = ""
    engine: str = "golden"
    model: str = ""
    engine_options: str = "{}"
    input: str = "raw"
    image_topic: str = "/camera/image_raw"
    qos: str = "sensor_data"
    align: str = "euclidean"
    publish_annotated: bool = False
    diagnostics_period: float = 1.0
    latency_window: int = 300
    executor: str = "events"
    cv_threads: int = 1

    def __post_init__(self) -> None:
        problems = [p for p in self._problems() if p]
        if problems:
            raise ConfigError("invalid inspector parameters:\n  - " + "\n  - ".join(problems))

    def _problems(self) -> list[str | None]:
        return [
            _check_store(self.store),
            check_product_id(self.product_id),
            _choice("engine", self.engine, tuple(sorted(ENGINES))),
            _check_model(self.engine, self.model),
            _check_options(self.engine_options),
            _choice("input", self.input, INPUTS),
            None if self.image_topic.strip() else "image_topic is empty; set the camera topic, e.g. /camera/image_raw",
            _choice("qos", self.qos, QOS_PROFILES),
            _choice("align", self.align, ALIGN_MODES),
            None if self.diagnostics_period > 0 else f"diagnostics_period={self.diagnostics_period}: expected seconds > 0",
            None if self.latency_window >= 10 else f"latency_window={self.latency_window}: expected an integer >= 10",
            _choice("executor", self.executor, EXECUTORS),
            None if self.cv_threads >= 0 else f"cv_threads={self.cv_threads}: expected an integer >= 0 (0: OpenCV's default)",
        ]

    @property
    def options(self) -> dict[str, Any]:
        """Engine constructor options: ``engine_options`` (JSON) plus ``model`` where given."""
        opts = json.loads(self.engine_options or "{}")
        if self.model:
            opts["model"] = self.model
        return opts

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> InspectorParams:
        """Build from ROS parameter values, which YAML may have typed loosely (``product_id:=1234`` is
        an integer, ``diagnostics_period:=2`` too): coerce each to its field's type, or ConfigError."""
        defaults = cls.defaults()
        coerced, problems = {}, []
        for name, value in values.items():
            try:
                coerced[name] = _coerce(value, type(defaults[name]))
            except (TypeError, ValueError):
                problems.append(f"{name}={value!r}: expected {_TYPE_NAMES[type(defaults[name])]}")
        if problems:
            raise ConfigError("invalid inspector parameters:\n  - " + "\n  - ".join(problems))
        return cls(**coerced)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Field name -> default, the ROS parameter declarations."""
        return {f.name: f.default for f in fields(cls)}


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{value!r} is not {_TYPE_NAMES[kind]}")


def check_product_id(product_id: str) -> str | None:
    """Why ``product_id`` is not a valid id, or None."""
    if not product_id:
        return "product_id is empty; set the product whose reference to inspect against (-p product_id:=ID)"
    if not ID_PATTERN.match(product_id):
        return f"product_id={product_id!r} is not a valid id; expected letters, digits, '.', '_' or '-' (max 64)"
    return None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str | None:
    if value in allowed:
        return None
    return f"{name}={value!r} is not supported; expected one of: {', '.join(allowed)}"


def _check_store(store: str) -> str | None:
    if not store:
        return "store is empty; set the reference store folder (-p store:=/path/to/references)"
    if not Path(store).is_dir():
        return f"store={store!r} is not a folder; create the reference store first (differad reference add ...)"
    return None


def _check_model(engine: str, model: str) -> str | None:
    if engine in ENGINES_NEEDING_MODEL and not model:
        return f"engine={engine!r} needs a model: set -p model:=/path/to/{'model_dir' if engine == 'vlm' else 'bundle'}"
    if model and not Path(model).exists():
        return f"model={model!r} does not exist; expected a model folder (vlm) or an export bundle (onnx)"
    return None


def _check_options(text: str) -> str | None:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        return f"engine_options={text!r} is not JSON ({e.msg}); expected an object such as '{{\"k\": 3.0}}'"
    if not isinstance(value, dict):
        return f"engine_options={text!r} is not a JSON object; expected e.g. '{{\"k\": 3.0}}'"
    return None
