"""Options shared by ``inspect`` and ``eval``: which engine, its model, and the alignment step.

The flags map one-to-one onto engine constructor keywords; an option the chosen engine does not take
is refused with a clear error instead of being silently ignored.
"""

from __future__ import annotations

import argparse
import inspect as pyinspect
from pathlib import Path
from typing import Any

from ..alignment import AlignConfig
from ..engines import ENGINES, Engine, Reference, engine_class
from ..engines.vlm import KV_CACHES
from ..errors import ConfigError, EngineError, ModelLoadError
from ..images import load_image
from ..inspector import Inspector

DEFAULT_ENGINE = "golden"
MOTIONS = ("euclidean", "translation", "affine", "homography")
DTYPES = ("fp32", "bf16", "fp16")
QUANTS = ("nf4", "int8")
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
        "--engine", default=None, metavar="NAME",
        help=f"detector: {', '.join(sorted(ENGINES))} (default: golden, no weights needed)",
    )
    g.add_argument("--model", type=Path, metavar="PATH", help="model folder (vlm) or export bundle (onnx)")
    g.add_argument("--dtype", choices=DTYPES, help="weights dtype of the vlm engine (default: the engine's)")
    g.add_argument("--device", metavar="DEV", help="cpu, cuda or cuda:N (vlm; default: cpu)")
    g.add_argument(
        "--providers", type=_comma_list, metavar="P[,P...]",
        help="ONNX Runtime execution providers in order, e.g. CUDAExecutionProvider,CPUExecutionProvider (onnx)",
    )
    g.add_argument("--threads", type=int, metavar="N", help="intra-op threads of ONNX Runtime (onnx)")
    g.add_argument("--quant", choices=QUANTS, help="bitsandbytes quantization of the vlm engine (CUDA)")
    g.add_argument("--template", dest="template_id", metavar="ID", help="prompt template id (default: the one stored with the model)")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="token limit of the answer (vlm)")
    g.add_argument(
        "--kv-cache", choices=KV_CACHES, help="vlm KV cache: dynamic (default) or static (fixed shapes; generate "
        "compiles the decoder on CUDA)",
    )
    g.add_argument(
        "--no-reference-cache", dest="reference_cache", action="store_false", default=None,
        help="recompute the reference prefix for every target (vlm; for comparison and debugging)",
    )
    a = parser.add_argument_group("alignment")
    a.add_argument(
        "--align", action=argparse.BooleanOptionalAction, default=True,
        help="register each target onto the reference before detection (default: on)",
    )
    a.add_argument("--motion", choices=MOTIONS, default="euclidean", help="alignment motion model")


def _comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def engine_flags_given(args: argparse.Namespace) -> list[str]:
    """The engine flags set on the command line (to refuse them where no engine runs)."""
    given = [flag for key, flag in _FLAGS.items() if getattr(args, key, None) is not None]
    return (["--engine"] if args.engine is not None else []) + given


def engine_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The engine keywords the user actually set (defaults stay the engine's own)."""
    opts = {k: getattr(args, k, None) for k in _FLAGS}
    opts = {k: v for k, v in opts.items() if v is not None}
    if name in MODEL_ENGINES and "model" not in opts:
        raise EngineError(
            f"engine {name!r} needs --model PATH (a model folder for vlm, a bundle for onnx); "
            "for a test model run: differad dev make-model DIR --size tiny"
        )
    if "model" in opts and not opts["model"].exists():
        raise ModelLoadError(f"model path not found: {opts['model']}; pass an existing model folder or bundle")
    return opts


def _check_accepted(cls: type[Engine], name: str, opts: dict[str, Any]) -> None:
    """Engines name the options they take; ``**overrides`` (engine tuning knobs) does not count."""
    params = pyinspect.signature(cls.__init__).parameters
    refused = [_FLAGS[k] for k in opts if k not in params]
    if refused:
        raise ConfigError(f"engine {name!r} does not take {', '.join(refused)}; drop the option or pick another engine")


def build_engine(args: argparse.Namespace) -> Engine:
    """Create the engine named by ``--engine`` with the options given on the command line."""
    name = args.engine or DEFAULT_ENGINE
    cls = engine_class(name)
    opts = engine_options(args, name)
    _check_accepted(cls, name, opts)
    try:
        return cls(**opts)
    except (OSError, ValueError) as e:  # third-party loaders raise these for unreadable folders
        if "model" not in opts:
            raise
        raise ModelLoadError(f"cannot load model {opts['model']} for engine {name!r}: {e}") from e


def build_inspector(engine: Engine, args: argparse.Namespace) -> Inspector:
    """The core pipeline (alignment, then the engine, box mapped back to the frame)."""
    return Inspector(engine, align=AlignConfig(motion=args.motion) if args.align else None)


def load_reference(path: Path | str) -> Reference:
    """An ad-hoc reference from an image file; versioned by content so handle caches never mix two."""
    ref = Reference(image=load_image(path), product_id="adhoc")
    ref.version = ref.key[:16]
    ref.metadata["path"] = str(path)
    return ref
