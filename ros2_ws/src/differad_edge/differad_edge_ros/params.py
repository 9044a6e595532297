"""The inspector node's configuration: one typed dataclass, validated in one place.

The node declares one ROS parameter per field (same name, same default), reads them once and builds
:class:`InspectorParams`; an invalid value raises :class:`ConfigError` naming the value, what was
expected and the fix, and the node exits non-zero. Engine options also come as nested parameters
(``golden.k``, ...), see :mod:`differad_edge_ros.engine_params`.

Ids (``product_id``, ``view_id``) are strings, but YAML types ``0123`` as the integer 83: an id
that arrives as a number is taken from its literal text on the command line where it is there,
else refused with the quoting to use (:func:`id_from_value`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from differad_edge.alignment import MOTIONS, Motion
from differad_edge.engines import ENGINES
from differad_edge.errors import ConfigError
from differad_edge.views import VIEW_ID_PATTERN

from .spin import EXECUTORS

#: Same rule as the reference store's ids.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ALIGN_MODES = ("none", *(str(m) for m in MOTIONS))  # plain names: a ROS parameter and argparse take them
INPUTS = ("raw", "compressed")
QOS_PROFILES = ("sensor_data", "reliable")
ENGINES_NEEDING_MODEL = ("vlm", "onnx")


@dataclass(frozen=True)
class InspectorParams:
    """Parameters of node ``inspector`` (``config/inspect.yaml`` documents each)."""

    store: str = ""
    product_id: str = ""
    view_id: str = ""
    engine: str = "golden"
    model: str = ""
    engine_options: str = "{}"
    input: str = "raw"
    image_topic: str = "/camera/image_raw"
    qos: str = "sensor_data"
    align: str = str(Motion.HOMOGRAPHY)  # AlignConfig's default, as in the CLI; a motion calibration stored wins
    publish_annotated: bool = False
    diagnostics_period: float = 1.0
    latency_window: int = 300
    executor: str = "events"
    cv_threads: int = 1
    stream: bool = True
    trigger_timeout: float = 5.0
    diagnostics_window: float = 10.0
    frame_timeout: float = 5.0
    expected_rate: float = 0.0
    engine_error_limit: int = 3
    queue_depth: int = 2
    autostart: bool = True

    def __post_init__(self) -> None:
        problems = [p for p in self._problems() if p]
        if problems:
            raise ConfigError("invalid inspector parameters:\n  - " + "\n  - ".join(problems))

    def _problems(self) -> list[str | None]:
        return [
            _check_store(self.store),
            check_product_id(self.product_id),
            check_view_id(self.view_id),
            _choice("engine", self.engine, tuple(sorted(ENGINES))),
            _check_model(self.engine, self.model),
            _check_options(self.engine_options),
            _choice("input", self.input, INPUTS),
            check_topic(self.image_topic),
            _choice("qos", self.qos, QOS_PROFILES),
            _choice("align", self.align, ALIGN_MODES),
            None
            if self.diagnostics_period > 0
            else f"diagnostics_period={self.diagnostics_period}: expected seconds > 0",
            None if self.latency_window >= 10 else f"latency_window={self.latency_window}: expected an integer >= 10",
            _choice("executor", self.executor, EXECUTORS),
            None
            if self.cv_threads >= 0
            else f"cv_threads={self.cv_threads}: expected an integer >= 0 (0: OpenCV's default)",
            None if self.trigger_timeout > 0 else f"trigger_timeout={self.trigger_timeout}: expected seconds > 0",
            None
            if self.diagnostics_window > 0
            else f"diagnostics_window={self.diagnostics_window}: expected seconds > 0",
            None if self.frame_timeout >= 0 else f"frame_timeout={self.frame_timeout}: expected seconds >= 0 (0: off)",
            None if self.expected_rate >= 0 else f"expected_rate={self.expected_rate}: expected frames/s >= 0 (0: off)",
            None
            if self.engine_error_limit >= 1
            else f"engine_error_limit={self.engine_error_limit}: expected an integer >= 1",
            None
            if 1 <= self.queue_depth <= 16
            else f"queue_depth={self.queue_depth}: expected an integer from 1 to 16",
        ]

    @property
    def motion(self) -> Motion | None:
        """The alignment motion model ``align`` names (validated above); None: ``align`` is ``none``."""
        return None if self.align == "none" else Motion(self.align)

    @property
    def options(self) -> dict[str, Any]:
        """Engine constructor options: ``engine_options`` (JSON) plus ``model`` where given."""
        opts = json.loads(self.engine_options or "{}")
        if self.model:
            opts["model"] = self.model
        return opts

    @classmethod
    def from_values(cls, values: dict[str, Any], literals: dict[str, str] | None = None) -> InspectorParams:
        """Build from ROS parameter values, which YAML may have typed loosely (``diagnostics_period:=2``
        is an integer): coerce each to its field's type, or ConfigError. Ids are handled by
        :func:`id_from_value` with ``literals`` (name -> text given on the command line)."""
        defaults = cls.defaults()
        coerced, problems = {}, []
        for name, value in values.items():
            if name in ID_FIELDS:
                try:
                    coerced[name] = id_from_value(name, value, (literals or {}).get(name))
                except ConfigError as e:
                    problems.append(str(e))
                continue
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


#: String parameters that are ids: YAML's number typing would change them (``0123`` -> 83).
ID_FIELDS = ("product_id", "view_id")


def id_from_value(name: str, value: Any, literal: str | None = None) -> str:
    """An id parameter as the exact text the user meant.

    A string is kept as is. A number (YAML read ``0123`` as 83, ``1e3`` as 1000.0) is replaced by
    ``literal``, its text on the command line, where that is known; otherwise it is refused, since
    the digits the user typed cannot be recovered from the number.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if literal is not None:
            return literal
        raise ConfigError(
            f"{name}={value!r} arrived as a number (YAML reads unquoted digits as numbers: 0123 becomes 83); "
            f"quote the id: -p {name}:=\"'{value}'\" on the command line, ros2 param set <node> {name} \"'{value}'\", "
            f'or {name}: "{value}" in a parameter file'
        )
    raise ConfigError(f"{name}={value!r}: expected a string")


def command_line_literals(argv: list[str], names: tuple[str, ...] = ID_FIELDS) -> dict[str, str]:
    """``name -> text`` of ``-p name:=text`` / ``--param name:=text`` in ``argv`` (last one wins), with
    one pair of surrounding YAML quotes removed: the text the user typed, before YAML typed it."""
    out: dict[str, str] = {}
    for flag, arg in zip(argv, argv[1:], strict=False):
        if flag not in ("-p", "--param") or ":=" not in arg:
            continue
        key, text = arg.split(":=", 1)
        key = key.rsplit(":", 1)[-1]  # a node-prefixed "inspector:product_id"
        if key in names:
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
                text = text[1:-1]
            out[key] = text
    return out


#: A ROS topic name (relative, absolute or private), without substitutions.
TOPIC_PATTERN = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def check_topic(topic: str) -> str | None:
    """Why ``topic`` is not a valid ROS topic name, or None."""
    if not topic.strip():
        return "image_topic is empty; set the camera topic, e.g. /camera/image_raw"
    if not TOPIC_PATTERN.match(topic) or "__" in topic:
        return (
            f"image_topic={topic!r} is not a valid ROS topic name; expected names of letters, digits and '_' "
            "separated by '/', e.g. /camera/image_raw"
        )
    return None


def check_view_id(view_id: str) -> str | None:
    """Why ``view_id`` is not a valid view id, or None (empty: the product's single view)."""
    if view_id and not VIEW_ID_PATTERN.match(view_id):
        return f"view_id={view_id!r} is not a valid view id; expected letters, digits, '_' or '-' (max 32, no '.')"
    return None


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
    if len(text) > 65536:
        return f"engine_options is {len(text)} characters long; expected a small JSON object (or nested parameters)"
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        return f"engine_options={text[:80]!r} is not JSON ({e.msg}); expected an object such as '{{\"k\": 3.0}}'"
    except RecursionError:
        return f"engine_options={text[:40]!r}... is nested too deeply; expected a flat object such as '{{\"k\": 3.0}}'"
    if not isinstance(value, dict):
        return f"engine_options={text!r} is not a JSON object; expected e.g. '{{\"k\": 3.0}}'"
    return None
