"""The policy model for training (dtype, QLoRA, frozen vision tower, LoRA) and the checkpoint it leaves.

A finished run's output folder loads in the ``vlm`` engine and in ``differad-export`` like any
Qwen3-VL checkpoint: weights (LoRA merged on request), the processor, and the prompt template it was
trained with (``prompts.PROMPT_FILE``), so inference builds exactly the training prompt.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from differad_edge.errors import ConfigError, ModelLoadError, missing_extra
from differad_edge.fileio import atomic_write_json
from differad_edge.prompts import PROMPT_FILE, PromptTemplate
from differad_edge.vlm.factory import mark_processor_class
from differad_edge.vlm.loader import DTYPES, check_model_dir, check_tokenizer, load_processor, weight_load_errors

from .config import LoraSection, ModelSection

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, DTYPES[name])


def _bnb_config(quant: str, dtype: Any) -> Any:
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as e:
        raise missing_extra("bitsandbytes", "train") from e
    if quant == "nf4":  # QLoRA recipe: nf4 + double quantization, compute in the training dtype
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def lora_target_regex(modules: list[str]) -> str:
    """PEFT target: the named projections inside the language model only (never the vision tower)."""
    if not modules:
        raise ConfigError("lora.target_modules is empty; list projections such as q_proj, v_proj")
    return rf".*language_model.*\.({'|'.join(modules)})"


def load_base(model_cfg: ModelSection, quantize: bool = True) -> Any:
    """The pretrained Qwen3-VL weights, optionally quantized with bitsandbytes (QLoRA)."""
    path, _ = check_model_dir(model_cfg.path)
    try:
        from transformers import Qwen3VLForConditionalGeneration
    except ImportError as e:
        raise missing_extra("transformers", "train") from e
    dtype = torch_dtype(model_cfg.dtype)
    kwargs: dict[str, Any] = dict(dtype=dtype, use_safetensors=True, trust_remote_code=False, local_files_only=True)
    if quantize and model_cfg.quant:
        kwargs["quantization_config"] = _bnb_config(model_cfg.quant, dtype)
        import torch

        if torch.cuda.is_available():  # each process keeps its quantized copy on its own GPU
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        return Qwen3VLForConditionalGeneration.from_pretrained(path, **kwargs)
    except weight_load_errors() as e:
        raise ModelLoadError(f"could not load {path} for training: {e}") from e


def load_policy(model_cfg: ModelSection, lora_cfg: LoraSection) -> tuple[Any, Any]:
    """(model ready for a TRL trainer, processor). LoRA is applied here, so trainers get no peft_config."""
    path, cfg = check_model_dir(model_cfg.path)
    processor = load_processor(path)
    check_tokenizer(processor.tokenizer, cfg, path)
    model = load_base(model_cfg)
    if model_cfg.max_pixels:
        processor.image_processor.size = {"shortest_edge": 56 * 56, "longest_edge": model_cfg.max_pixels}
    if model_cfg.freeze_vision:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if lora_cfg.enabled:
        try:
            from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        except ImportError as e:
            raise missing_extra("peft", "train") from e
        if model_cfg.quant:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=model_cfg.gradient_checkpointing)
        elif model_cfg.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings + checkpointing would cut LoRA's gradients
        config = LoraConfig(
            r=lora_cfg.r,
            lora_alpha=lora_cfg.alpha,
            lora_dropout=lora_cfg.dropout,
            target_modules=lora_target_regex(lora_cfg.target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ConfigError("no trainable parameters: check lora.target_modules or model.freeze_vision")
    logger.info("trainable parameters: %d", trainable)
    return model, processor


def save_inference_files(folder: str | os.PathLike, processor: Any, template: PromptTemplate) -> None:
    """Processor + prompt template next to the weights: what the engine and export need besides weights."""
    folder = Path(folder)
    processor.save_pretrained(folder)
    mark_processor_class(folder)
    atomic_write_json(folder / PROMPT_FILE, template.to_dict())


def check_adapter_dir(adapter_dir: str | os.PathLike) -> Path:
    """A LoRA adapter folder with safetensors weights (pickled ``adapter_model.bin`` can run code)."""
    d = Path(adapter_dir)
    if not (d / "adapter_config.json").is_file():
        raise ModelLoadError(f"{d} has no adapter_config.json; pass the OUT/adapter folder of a LoRA run")
    if not (d / "adapter_model.safetensors").is_file():
        found = "only pickled weights" if any(d.glob("adapter_model.bin")) else "no adapter_model.safetensors"
        raise ModelLoadError(
            f"{d}: {found}; DifferAD loads safetensors only (re-save the adapter with "
            "save_pretrained(DIR, safe_serialization=True) in a trusted environment)"
        )
    return d


def merge_lora(base_cfg: ModelSection, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Fold a LoRA adapter into un-quantized base weights and save a plain checkpoint in ``out_dir``.

    The base is re-loaded without quantization, so QLoRA runs also merge into full-precision weights.
    """
    try:
        from peft import PeftModel
    except ImportError as e:
        raise missing_extra("peft", "train") from e
    check_adapter_dir(adapter_dir)
    base = load_base(base_cfg, quantize=False)
    try:
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    except weight_load_errors() as e:
        raise ModelLoadError(f"cannot apply the adapter in {adapter_dir} to {base_cfg.path}: {e}") from e
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.merge.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    out.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()
    return out
