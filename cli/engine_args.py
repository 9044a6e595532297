"""Options shared by ``inspect`` and ``eval``: which engine, its model, its typed options, the
alignment step, and where the reference comes from (an image file or the reference store).

The flags, ``--engine-option KEY=VALUE`` and ``--engine-config FILE.yaml`` all map onto the fields of
the engine's typed config (``Engine.config_type``: ``GoldenConfig``, ``VLMConfig``, ``OnnxConfig``),
the same options the ROS node takes; the weights (``--model``) are the engine's own argument. An
option the chosen engine does not take is refused with a clear error (naming the valid ones and the
closest match) instead of being silently ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..alignment import MOTIONS, AlignConfig
from ..engines import ENGINES, Engine, Reference, engine_class
from ..engines.configuration import check_option_names, option_names
from ..engines.configuration_vlm import KV_CACHES
from ..errors import ConfigError, EngineError, ModelLoadError, ReferenceError
from ..images import load_image
from ..inspector import Inspector
from ..quality import QualityLimits
from ..store import ReferenceStore
from ..vlm.loader import DTYPES as DTYPE_NAMES
from ..vlm.loader import QUANTS

DEFAULT_ENGINE = "golden"
DTYPES = tuple(DTYPE_NAMES)
#: Engines that load weights and so need --model.
MODEL_ENGINES = ("vlm", "onnx")
#: CLI flag -> engine keyword, for the error message when an engine does not take it.
_FLAGS = {
    "model": "--model",
    "dtype": "--dtype",
    "device": "--device",
    "quant": "--quant",
    "template_id": "--template",
    "reference_cache": "--no-reference-cache",
    "max_new_tokens": "--max-new-tokens",
    "kv_cache": "--kv-cache",
    "providers": "--providers",
    "threads": "--threads",
}


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine")
    g.add_argument(
        "--engine",
        default=None,
        metavar="NAME",
        help=f"detector: {', '.join(sorted(ENGINES))} (default: golden, no weights needed)",
    )
    g.add_argument("--model", type=Path, metavar="PATH", help="model folder (vlm) or export bundle (onnx)")
    g.add_argument("--dtype", choices=DTYPES, help="weights dtype of the vlm engine (default: the engine's)")
    g.add_argument("--device", metavar="DEV", help="cpu, cuda or cuda:N (vlm; default: cpu)")
    g.add_argument(
        "--providers",
        type=_comma_list,
        metavar="P[,P...]",
        help="ONNX Runtime execution providers in order, e.g. CUDAExecutionProvider,CPUExecutionProvider (onnx)",
    )
    g.add_argument("--threads", type=int, metavar="N", help="intra-op threads of ONNX Runtime (onnx)")
    g.add_argument("--quant", choices=QUANTS, help="bitsandbytes quantization of the vlm engine (CUDA)")
    g.add_argument(
        "--template",
        dest="template_id",
        metavar="ID",
        help="prompt template id (default: the one stored with the model)",
    )
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="token limit of the answer (vlm)")
    g.add_argument(
        "--kv-cache",
        choices=KV_CACHES,
        help="vlm KV cache: dynamic (default) or static (fixed shapes; generate compiles the decoder on CUDA)",
    )
    g.add_argument(
        "--no-reference-cache",
        dest="reference_cache",
        action="store_false",
        default=None,
        help="recompute the reference prefix for every target (vlm; for comparison and debugging)",
    )
    g.add_argument(
        "--engine-option",
        dest="engine_option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the engine's typed config, e.g. k=3.5 or min_area=40 (golden), max_batch=4 (vlm); "
        "repeatable; values are YAML: 3.5, true, null, [a, b]",
    )
    g.add_argument(
        "--engine-config",
        type=Path,
        metavar="FILE.yaml",
        help="engine options as a YAML mapping (--engine-option wins over the file)",
    )
    a = parser.add_argument_group("alignment")
    a.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="register each target onto the reference before detection (default: on)",
    )
    a.add_argument(
        "--motion",
        choices=[str(m) for m in MOTIONS],  # plain names: argparse's error shows each choice's repr
        default=None,
        help=f"alignment motion model (default: the one calibration stored with the reference, else {AlignConfig().motion})",
    )
    c = parser.add_argument_group("checks before judging")
    c.add_argument(
        "--channel-mismatch",
        choices=("gray", "refuse"),
        default="gray",
        help="a mono frame against a colour reference (or the reverse): compare in luminance (default) or "
        "NOT INSPECTED",
    )
    c.add_argument(
        "--no-quality-check",
        dest="quality_check",
        action="store_false",
        help="judge blurred / over- or under-exposed frames anyway (default: NOT INSPECTED)",
    )


def _comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Inspect against a registered reference, exactly as the ROS node does."""
    g = parser.add_argument_group("reference store")
    g.add_argument("--store", type=Path, metavar="DIR", help="reference store (differad-calibrate); needs --product")
    g.add_argument("--product", metavar="ID", help="product id in --store: its active reference is used")
    g.add_argument(
        "--version", dest="ref_version", metavar="V", help="a specific version of --product instead of the active one"
    )


def store_reference(args: argparse.Namespace) -> tuple[ReferenceStore, str, str | None] | None:
    """``(store, product, version)`` when ``--store`` was given; checks the reference loads now, so a
    wrong id is one error line before any work, not a NOT_INSPECTED per target."""
    if args.store is None:
        if args.product is not None or args.ref_version is not None:
            raise ConfigError("--product / --version need --store DIR (the reference store)")
        return None
    if args.product is None:
        raise ConfigError("--store needs --product ID (which product's reference to use)")
    if not args.store.is_dir():
        raise ReferenceError(f"--store {args.store}: no such folder; pass the store folder differad-calibrate wrote")
    store = ReferenceStore(args.store)
    store.load(args.product, args.ref_version)  # raises the precise ReferenceError
    return store, args.product, args.ref_version


def engine_flags_given(args: argparse.Namespace) -> list[str]:
    """The engine flags set on the command line (to refuse them where no engine runs)."""
    given = [flag for key, flag in _FLAGS.items() if getattr(args, key, None) is not None]
    if getattr(args, "engine_option", None):
        given.append("--engine-option")
    if getattr(args, "engine_config", None) is not None:
        given.append("--engine-config")
    return (["--engine"] if args.engine is not None else []) + given


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--engine-config`` merged with ``--engine-option`` pairs (values typed as YAML scalars)."""
    opts: dict[str, Any] = {}
    path = getattr(args, "engine_config", None)
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"--engine-config {path}: {e.strerror or e}") from e
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"--engine-config {path} is not valid YAML: {' '.join(str(e).split())}") from e
        if data is None:
            data = {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ConfigError(f"--engine-config {path} must hold a mapping of option names to values")
        opts.update(data)
    for pair in getattr(args, "engine_option", None) or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--engine-option {pair!r} must be KEY=VALUE, e.g. k=3.5")
        opts[key.strip()] = _yaml_value(value.strip())
    return opts


def engine_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The engine keywords the user actually set (defaults stay the engine's own)."""
    opts = {k: getattr(args, k, None) for k in _FLAGS}
    opts = {k: v for k, v in opts.items() if v is not None}
    if name in MODEL_ENGINES and "model" not in opts:
        raise EngineError(
            f"engine {name!r} needs --model PATH (a model folder for vlm, a bundle for onnx); "
            "for a test model run: differad dev make-model DIR --size tiny"
        )
    model = opts.get("model")
    if model is not None and not Path(model).exists():
        raise ModelLoadError(f"model path not found: {model}; pass an existing model folder or bundle")
    return opts


def _options_of(cls: type[Engine], name: str) -> list[str]:
    """The option names of an engine: its typed config's fields (every registered engine has one)."""
    if cls.config_type is None:
        raise EngineError(f"engine {name!r} declares no config_type; give it a typed config (see CONTRIBUTING.md)")
    return option_names(cls.config_type)


def _check_accepted(name: str, opts: dict[str, Any], valid: list[str]) -> None:
    """Refuse a flag whose option the engine's config lacks (``--dtype`` for golden), naming the flag."""
    refused = [_FLAGS[k] for k in opts if k != "model" and k not in valid]
    if "model" in opts and name not in MODEL_ENGINES:
        refused.insert(0, _FLAGS["model"])
    if refused:
        raise ConfigError(f"engine {name!r} does not take {', '.join(refused)}; drop the option or pick another engine")


def build_engine(args: argparse.Namespace) -> Engine:
    """Create the engine named by ``--engine`` with the options given on the command line."""
    name = args.engine or DEFAULT_ENGINE
    cls = engine_class(name)
    valid = _options_of(cls, name)
    opts = engine_options(args, name)
    _check_accepted(name, opts, valid)
    typed = config_options(args)
    if typed:
        check_option_names(name, typed, valid)
        clash = sorted(set(typed) & set(opts))
        if clash:
            raise ConfigError(f"{', '.join(clash)} given both as a flag and as --engine-option; keep one")
        opts.update(typed)
    try:
        return cls(**opts)
    except (OSError, ValueError) as e:  # third-party loaders raise these for unreadable folders
        if "model" not in opts:
            raise
        raise ModelLoadError(f"cannot load model {opts['model']} for engine {name!r}: {e}") from e


def build_inspector(engine: Engine, args: argparse.Namespace, store: ReferenceStore | None = None) -> Inspector:
    """The core pipeline (checks, alignment, the engine, defects mapped back to the frame), built the
    way the ROS node builds it, so the CLI reproduces what the node decides."""
    return Inspector(
        engine,
        store=store,
        align=(AlignConfig(motion=args.motion) if args.motion else AlignConfig()) if args.align else None,
        on_channel_mismatch=args.channel_mismatch,
        quality=QualityLimits() if args.quality_check else None,
    )


def load_reference(path: Path | str) -> Reference:
    """An ad-hoc reference from an image file; versioned by content so handle caches never mix two."""
    ref = Reference(image=load_image(path), product_id="adhoc")
    ref.version = ref.key[:16]
    ref.metadata["path"] = str(path)
    return ref
