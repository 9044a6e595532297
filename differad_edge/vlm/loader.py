"""The one way a Qwen-VL checkpoint gets loaded: local folder, safetensors, no remote code.

Real checkpoints and factory-made ones go through the same path, so tests exercise what users run.
Refusals are deliberate: a hub id would download (edge cells are offline, and the model must be
pinned), pickled ``.bin``/``.pt`` weights can execute code, and ``trust_remote_code`` runs whatever
the folder ships.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, ModelLoadError, missing_extra
from ..fileio import sha256_bytes
from ..prompts import PROMPT_FILE, PromptTemplate

Dtype = Literal["fp32", "bf16", "fp16"]
Quant = Literal["nf4", "int8"]

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
QUANTS = ("nf4", "int8")
SUPPORTED_MODEL_TYPES = ("qwen3_vl",)
#: Known Qwen-VL generations the engine does not drive yet (their vision/rope inputs differ).
KNOWN_UNSUPPORTED = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl_moe": "Qwen3-VL-MoE"}
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: Tokens the engine's prompt relies on, and the config field that must hold each one's id.
REQUIRED_TOKENS = {
    "<|image_pad|>": "image_token_id",
    "<|vision_start|>": "vision_start_token_id",
    "<|vision_end|>": "vision_end_token_id",
}


def weight_load_errors() -> tuple[type[BaseException], ...]:
    """What ``from_pretrained`` raises for a damaged checkpoint (a truncated safetensors file raises
    ``SafetensorError``, which is no ``OSError``)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, RuntimeError, KeyError, SafetensorError)


@dataclass
class LoadedModel:
    """A model ready for inference plus what the engine needs to drive it.

    ``template`` is the prompt stored with the model (``differad_prompt.json``) or ``None``;
    ``info`` says where it came from and how it was loaded (``identity`` keys caches).
    """

    model: Any
    processor: Any
    tokenizer: Any
    template: PromptTemplate | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return str(self.info.get("identity", ""))


def check_model_dir(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Validate a checkpoint folder without loading weights; returns ``(path, config dict)``."""
    p = Path(path).expanduser()
    if not p.is_dir():
        hint = (
            "DifferAD loads local folders only and never downloads; fetch it first, e.g. "
            f"`huggingface-cli download {path} --local-dir ./models/{Path(str(path)).name}`, and pass that folder"
            if "/" in str(path) and not p.exists() and not str(path).startswith((".", "/", "~"))
            else "pass the folder that holds config.json and *.safetensors "
            "(or create a test model with `differad dev make-model DIR`)"
        )
        raise ModelLoadError(f"model folder {str(path)!r} does not exist or is not a folder; {hint}")
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        adapter = next((d for d in (p, p / "adapter") if (d / "adapter_config.json").is_file()), None)
        hint = (
            f"it holds a LoRA adapter; merge it into its base model first: `differad-train merge --base BASE "
            f"--adapter {adapter} --out MERGED` (or train with --merge-lora)"
            if adapter is not None
            else "expected a Hugging Face Qwen3-VL checkpoint folder"
        )
        raise ModelLoadError(f"{p} has no config.json; {hint}")
    cfg = read_json_file(cfg_path, "model config", "re-download or re-create the model")
    for key in ("text_config", "vision_config"):
        if key in cfg and not isinstance(cfg[key], dict):
            raise ModelLoadError(
                f"{cfg_path}: {key} must be an object, got {type(cfg[key]).__name__}; "
                "re-download or re-create the model"
            )
    for key in (*REQUIRED_TOKENS.values(), "vision_start_token_id", "vision_end_token_id"):
        if key in cfg and (isinstance(cfg[key], bool) or not isinstance(cfg[key], int)):
            raise ModelLoadError(
                f"{cfg_path}: {key} must be an integer token id, got {cfg[key]!r:.40}; "
                "re-download or re-create the model"
            )
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        if (p / name).is_file():
            read_json_file(p / name, "tokenizer/processor file", "restore it from the checkpoint")
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        if model_type in KNOWN_UNSUPPORTED:
            why = f"{KNOWN_UNSUPPORTED[model_type]} checkpoints are not supported yet"
        else:
            why = f"model_type {model_type!r} is not a Qwen-VL model"
        raise ModelLoadError(f"{p}: {why}; expected model_type 'qwen3_vl' (e.g. Qwen/Qwen3-VL-2B-Instruct)")
    names = [f.name for f in p.iterdir() if f.is_file()]
    if not any(n.endswith(".safetensors") for n in names):
        pickled = sorted(n for n in names if n.endswith(PICKLED_WEIGHTS))
        found = f"found only pickled weights {pickled}" if pickled else "found no weight files"
        raise ModelLoadError(
            f"{p}: {found}; DifferAD loads safetensors only (pickles can run code). Convert with "
            "`model.save_pretrained(DIR, safe_serialization=True)` in a trusted environment"
        )
    return p, cfg


#: A config/tokenizer JSON larger than this is not one (a real tokenizer.json is ~10 MB).
MAX_JSON_BYTES = 256 << 20


def read_json_file(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from a model folder; damage of any kind (not UTF-8, invalid, nested thousands
    deep, not an object, a FIFO or oversized file) is one ``ModelLoadError`` naming the file."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            raise ModelLoadError(f"{what} {path} is not a regular file under {MAX_JSON_BYTES} bytes; {fix}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{what} {path} is not readable JSON ({str(e).splitlines()[0][:200]}); {fix}") from e
    except RecursionError as e:
        raise ModelLoadError(f"{what} {path} is nested too deeply to be one; {fix}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{what} {path} must hold a JSON object, got {type(data).__name__}; {fix}")
    return data


def model_identity(path: Path, dtype: str, quant: str | None) -> str:
    """A cheap fingerprint of the checkpoint (config + weight file names, sizes, mtimes) and load options."""
    parts = [(path / "config.json").read_bytes()]
    for f in sorted(path.glob("*.safetensors")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    parts.append(f"{dtype}:{quant}".encode())
    return sha256_bytes(b"\n".join(parts))[:16]


def _check_options(dtype: str, device: str, quant: str | None) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; expected one of {', '.join(DTYPES)}")
    if quant is not None and quant not in QUANTS:
        raise ConfigError(f"quant {quant!r} is not supported; expected None or one of {', '.join(QUANTS)}")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigError(f"device {device!r} is not supported; expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu'")


def _quantization_config(quant: str, torch_dtype: Any) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise missing_extra("bitsandbytes", "vlm") from e
    from transformers import BitsAndBytesConfig

    if quant == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_use_double_quant=False,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model(
    path: str | os.PathLike, dtype: Dtype = "fp32", device: str = "cpu", quant: Quant | None = None
) -> LoadedModel:
    """Load a local Qwen3-VL checkpoint for inference (eval mode, no gradients needed).

    ``quant`` = ``"nf4"``/``"int8"`` quantizes the linear layers with bitsandbytes at load time.
    """
    _check_options(dtype, device, quant)
    _check_bundle(path)
    p, cfg = check_model_dir(path)
    try:
        import torch
        from transformers import Qwen3VLForConditionalGeneration
    except ImportError as e:
        raise missing_extra(e.name or "transformers", "vlm") from e
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here; use device='cpu'")
    processor = load_processor(p)  # before the weights: a broken tokenizer fails in a second, not minutes
    check_tokenizer(processor.tokenizer, cfg, p)
    torch_dtype = getattr(torch, DTYPES[dtype])
    kwargs: dict[str, Any] = dict(
        dtype=torch_dtype, use_safetensors=True, trust_remote_code=False, local_files_only=True
    )
    if quant is not None:
        kwargs["quantization_config"] = _quantization_config(quant, torch_dtype)
        kwargs["device_map"] = device
    try:
        model = Qwen3VLForConditionalGeneration.from_pretrained(p, **kwargs)
        if quant is None:
            model = model.to(device)  # type: ignore[arg-type]
    except weight_load_errors() as e:
        raise ModelLoadError(f"could not load the weights in {p}: {e}; re-create or re-download the checkpoint") from e
    model.eval()
    n_params = sum(t.numel() for t in model.parameters())
    info = {
        "path": str(p.resolve()),
        "model_type": cfg.get("model_type"),
        "architecture": type(model).__name__,
        "dtype": dtype,
        "device": device,
        "quant": quant,
        "params": int(n_params),
        "identity": model_identity(p, dtype, quant),
    }
    return LoadedModel(model, processor, processor.tokenizer, read_template(p), info)


def _check_bundle(path: str | os.PathLike) -> None:
    """A ``differad-export`` bundle is loaded only after every file matches its manifest checksum."""
    from ..onnxrt.bundle import MANIFEST_NAME, load_bundle

    p = Path(path).expanduser()
    if not (p / MANIFEST_NAME).is_file():
        return
    bundle = load_bundle(p)  # BundleError names a missing or altered file
    if bundle.runtime != "torch":
        raise ModelLoadError(f"{p} is a {bundle.runtime!r} bundle; run it with the onnx engine (--engine onnx)")


def load_processor(path: str | os.PathLike) -> Any:
    """The image-only processor (tokenizer + image processor + chat template) of a checkpoint folder."""
    from .factory import chat_template_text
    from .processor import image_only_processor_class, pil_image_processor_class

    p = Path(path)
    cls = image_only_processor_class()
    try:
        image_processor = pil_image_processor_class().from_pretrained(p, local_files_only=True)  # type: ignore[attr-defined]
        processor = cls.from_pretrained(  # type: ignore[attr-defined]
            p,
            image_processor=image_processor,
            local_files_only=True,
            trust_remote_code=False,
        )
    except ModelLoadError:
        raise
    except Exception as e:  # tokenizers/transformers raise their own types for garbage files
        why = " ".join(str(e).split())[:300] or type(e).__name__
        raise ModelLoadError(f"could not load the tokenizer/image processor in {p}: {why}; restore those files") from e
    # from_pretrained hands the kwarg to the tokenizer too, which keeps it in init_kwargs and then
    # cannot write itself back to JSON: drop it so save_pretrained (training outputs) works.
    processor.tokenizer.init_kwargs.pop("image_processor", None)
    if not getattr(processor, "chat_template", None):
        processor.chat_template = chat_template_text()
    return processor


def check_tokenizer(tokenizer: Any, cfg: dict[str, Any], path: Path) -> None:
    """The image tokens must be single tokens with the config's ids, or every prompt breaks later.

    Transformers builds an empty tokenizer when the tokenizer files are missing; without this check
    that shows up only as an image-token count mismatch deep inside the first inference.
    """
    for token, field_name in REQUIRED_TOKENS.items():
        want = cfg.get(field_name)
        got = tokenizer.convert_tokens_to_ids(token)
        if want is not None and got != want:
            raise ModelLoadError(
                f"{path}: the tokenizer maps {token} to {got!r} but config.json says {field_name}={want}; "
                "the tokenizer files (tokenizer.json, tokenizer_config.json) are missing or do not belong to "
                "this model; restore them from the checkpoint"
            )


#: Where transformers reads a model folder's chat template from, first match wins.
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "processor_config.json", "tokenizer_config.json")


def chat_template_file(folder: str | os.PathLike) -> str:
    """The file of ``folder`` that holds its chat template (for error messages), or the packaged one."""
    for name in CHAT_TEMPLATE_FILES:
        f = Path(folder) / name
        try:
            if f.is_file() and (name.endswith(".jinja") or b'"chat_template"' in f.read_bytes()[:MAX_JSON_BYTES]):
                return str(f)
        except OSError:
            continue
    return "the SDK's packaged chat template"


def render_chat(processor: Any, messages: list[dict[str, Any]], folder: str | os.PathLike | None = None) -> str:
    """``processor.apply_chat_template`` (text, with the generation prompt); a template that Jinja's sandbox
    refuses (``{{ ''.__class__ }}``), that does not parse or that fails while rendering is one
    ``ModelLoadError`` naming its file and the fix, not a jinja2 traceback."""
    from jinja2 import TemplateError

    try:
        return str(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    except (TemplateError, RecursionError) as e:
        where = folder if folder is not None else getattr(getattr(processor, "tokenizer", None), "name_or_path", "")
        source = chat_template_file(where) if where else "the model's chat template"
        what = "the Jinja sandbox refused it" if type(e).__name__ == "SecurityError" else "it cannot be rendered"
        why = " ".join(str(e).split())[:200] or type(e).__name__
        fix = "restore it from the original checkpoint"
        if source.endswith("chat_template.jinja"):
            fix += " or delete it (the SDK's packaged Qwen3-VL template is used then)"
        raise ModelLoadError(
            f"chat template {source}: {what} ({type(e).__name__}: {why}); it was altered or is not a chat "
            f"template - {fix}"
        ) from e


def read_template(path: str | os.PathLike) -> PromptTemplate | None:
    """The prompt template stored with a model (``differad_prompt.json``), or ``None`` when absent."""
    f = Path(path) / PROMPT_FILE
    if not f.is_file():
        return None
    data = read_json_file(f, "prompt file", "re-create it or delete it")
    try:
        template = PromptTemplate.from_dict(data)
    except (ConfigError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{f} is not a valid prompt file ({e}); re-create it or delete it") from e
    if not all(isinstance(i, str) for i in template.instructions):
        raise ModelLoadError(f"{f}: instructions must be a list of strings; re-create it or delete it")
    return template
