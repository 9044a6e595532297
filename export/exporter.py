"""``differad-export``: checkpoint -> verified edge bundle (ONNX graphs or a bitsandbytes checkpoint).

Order matters: the memory budget and the verify set are checked before any weight is loaded; the
bundle is written into a temporary folder next to ``--out`` and moved in place only after the
manifest (checksums, verification, memory estimate) is complete, so ``--out`` is either a whole,
verified bundle or absent.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from tqdm.auto import tqdm

from differad_edge import __version__
from differad_edge.coords import MODEL_SCALE
from differad_edge.engines.vlm import DEFAULT_MAX_NEW_TOKENS
from differad_edge.errors import BundleError, ConfigError, missing_extra
from differad_edge.fileio import sha256_bytes, sha256_file
from differad_edge.grammar import GrammarSpec, grammar_for
from differad_edge.onnxrt.bundle import BUNDLE_FORMAT_VERSION, MANIFEST_NAME, Bundle, file_entries, write_manifest
from differad_edge.onnxrt.preprocess import ImageSpec, patchify, vision_host_inputs
from differad_edge.onnxrt.runtime import BundleRunner
from differad_edge.prompts import DEFAULT_INFERENCE_TEMPLATE, get_template
from differad_edge.vlm.loader import check_model_dir, load_model, load_processor, read_template
from differad_edge.vlm.model_card import MODEL_CARD, ModelCard, read_model_card
from differad_edge.vlm.size_policy import SizePolicy

from .agreement import Agreement, failures, summarize
from .budget import ModelShape, check_budget, estimate
from .config import ExportConfig
from .source import PromptSegments, SourceModel, prompt_ids, template_of
from .tensorrt import tensorrt_vision
from .verify_set import Pair, load_pairs_file, synthetic_pairs

EXPORTER = "differad-export"
COORDINATES = {
    "scale": MODEL_SCALE,
    "format": "(x1,y1),(x2,y2) integers on a 0-1000 grid of the model-input target image; (0,0),(0,0) = no anomaly",
    "mapping": "differad_edge.coords.from_model_scale, then the size policy's resize inverted to target pixels",
}
TORCH_QUANT = {"int4": "nf4", "int8": "int8", "fp16": None, "fp32": None}

Log = Callable[[str], None]
_SAVED = ("generation_config.json", "model.safetensors.index.json")  # written by save_pretrained


@dataclass
class ExportResult:
    """What an export produced: the bundle folder, its manifest and the agreement it verified."""

    bundle: Path
    manifest: dict[str, Any]
    agreement: Agreement | None
    failures: list[str]


def make_config(**options: Any) -> ExportConfig:
    """``ExportConfig`` with validation errors as one ``ConfigError`` line."""
    try:
        return ExportConfig(**options)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid export options: {msgs}") from e


def source_hash(model_dir: Path) -> str:
    """sha256 over the checkpoint's config and weight files (what the bundle was made from)."""
    lines = []
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".jinja")):
            lines.append(f"{f.name}:{sha256_file(f)}")
    return sha256_bytes("\n".join(lines).encode())


def _shape_from_config(model_dir: Path) -> ModelShape:
    """Model shape on the meta device: the budget check needs no weights."""
    import torch
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    cfg = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    with torch.device("meta"):
        return ModelShape.from_model(Qwen3VLForConditionalGeneration(cfg))


def _check_out(cfg: ExportConfig) -> None:
    out = cfg.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not cfg.overwrite:
        raise ConfigError(f"bundle folder {out} exists and is not empty; choose a new --out or pass --overwrite")


def _image_spec(loaded: Any) -> ImageSpec:
    ip, visual = loaded.processor.image_processor, loaded.model.model.visual
    return ImageSpec(
        patch_size=int(ip.patch_size),
        temporal_patch_size=int(ip.temporal_patch_size),
        merge_size=int(ip.merge_size),
        image_mean=tuple(float(v) for v in ip.image_mean),
        image_std=tuple(float(v) for v in ip.image_std),
        rescale_factor=float(ip.rescale_factor),
        num_grid_per_side=int(visual.num_grid_per_side),
        interpolation_align_corners=bool(visual.interpolation_align_corners),
    )


def _model_info(loaded: Any) -> dict[str, Any]:
    from .graphs import text_dims

    cfg, gen = loaded.model.config, loaded.model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else cfg.text_config.eos_token_id
    return {
        "architecture": type(loaded.model).__name__,
        "model_type": cfg.model_type,
        "image_token_id": int(cfg.image_token_id),
        "eos_token_ids": [int(e) for e in np.atleast_1d(eos)],
        "params": int(loaded.info.get("params", 0)),
        **text_dims(loaded.model),
    }


def _write_tokenizer(loaded: Any, model_dir: Path, dst: Path) -> None:
    src = model_dir / "tokenizer.json"
    if src.is_file():
        shutil.copyfile(src, dst)
    else:
        loaded.processor.tokenizer.backend_tokenizer.save(str(dst))


def _write_onnx(
    loaded: Any, model_dir: Path, tmp: Path, cfg: ExportConfig, spec: ImageSpec, policy: SizePolicy, bar: tqdm
) -> dict[str, str]:
    """vision.onnx, decoder.onnx (at the requested precision), embeddings.npy, tokenizer.json."""
    from .graphs import embedding_table, export_decoder, export_vision
    from .quantize import consolidate, quantize_graph

    model = loaded.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # the exporter traces eager attention; restored below
    work = tmp / ".work"
    work.mkdir()
    try:
        bar.set_postfix_str("vision graph")
        example = policy.apply(synthetic_pairs(1, 64, seed=cfg.seed)[0][0]).image
        pixels, grid = patchify(example, spec)
        (work / "vision").mkdir()
        (work / "decoder").mkdir()  # torch writes one file per tensor above 2 GiB: one folder per graph
        export_vision(model, work / "vision" / "vision.onnx", vision_host_inputs(grid, spec), pixels)
        bar.update()
        bar.set_postfix_str("decoder graph")
        export_decoder(model, work / "decoder" / "decoder.onnx")
        bar.update()
        bar.set_postfix_str(f"{cfg.quant} decoder")
        if cfg.quant == "fp32":
            consolidate(work / "decoder" / "decoder.onnx", tmp / "decoder.onnx")
        else:
            quantize_graph(work / "decoder" / "decoder.onnx", tmp / "decoder.onnx", cfg.quant, cfg.block_size)
        if cfg.vision_fp16:
            quantize_graph(work / "vision" / "vision.onnx", tmp / "vision.onnx", "fp16")
        else:
            consolidate(work / "vision" / "vision.onnx", tmp / "vision.onnx")
        bar.update()
        bar.set_postfix_str("embeddings + tokenizer")
        np.save(tmp / "embeddings.npy", embedding_table(model, np.float32 if cfg.quant == "fp32" else np.float16))
        _write_tokenizer(loaded, model_dir, tmp / "tokenizer.json")
        bar.update()
    finally:
        model.set_attn_implementation(previous)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "vision": "vision.onnx",
        "decoder": "decoder.onnx",
        "embeddings": "embeddings.npy",
        "tokenizer": "tokenizer.json",
    }


def _write_torch(model_dir: Path, tmp: Path, cfg: ExportConfig, bar: tqdm) -> dict[str, str]:
    """A checkpoint the vlm loader loads: bitsandbytes nf4/int8 serialized, or fp16/fp32 weights."""
    quant = TORCH_QUANT[cfg.quant]
    bar.set_postfix_str(f"torch {quant or cfg.quant} checkpoint")
    q = load_model(model_dir, dtype="fp16" if cfg.quant == "fp16" else "fp32", quant=quant)
    q.model.save_pretrained(tmp, safe_serialization=True)
    for f in model_dir.iterdir():  # tokenizer, processor, chat template, prompt file: as in the source
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in ("config.json", *_SAVED):
            shutil.copyfile(f, tmp / f.name)
    bar.update(4)
    return {"checkpoint": "."}


@dataclass(frozen=True)
class VerifySet:
    """The pairs an export is verified on, where they came from, and what the model's card says."""

    pairs: list[Pair]
    source: str  # manifest ``verification.pairs_source``
    card: ModelCard | None


def _verify_set(cfg: ExportConfig, model_dir: Path) -> VerifySet:
    """``--verify`` (its first ``verify_count`` pairs); else all the pairs the model's card names (a
    memorized fixture's boxes mean something on those only; a small set by construction); else
    ``verify_count`` synthetic pairs."""
    card = read_model_card(model_dir)
    if cfg.verify is not None:
        return VerifySet(load_pairs_file(cfg.verify, limit=cfg.verify_count), str(cfg.verify), card)
    own = card.pairs_path(model_dir) if card else None
    if own is not None and own.is_file():
        return VerifySet(load_pairs_file(own), f"model card: {own}", card)
    pairs = synthetic_pairs(cfg.verify_count, cfg.verify_size, seed=cfg.seed)
    return VerifySet(pairs, f"synthetic:{cfg.verify_count}x{cfg.verify_size}px", card)


def _failure_hint(vs: VerifySet) -> str:
    """What to do about a failed verification, for the model at hand."""
    if vs.card is not None and vs.card.random_weights:
        return (
            f"; the source is a random-weights model ({MODEL_CARD}): its boxes are noise, so a quantized "
            "bundle cannot agree on them. --no-verify-fail keeps it as a speed-only bundle "
            "(--check and the onnx engine then report it unverified)"
        )
    return " (relax the thresholds or pass --no-verify-fail to keep it)"


def verify(
    source: SourceModel, bundle_answer: Callable[[np.ndarray, np.ndarray], tuple[list[int], str]], pairs: list[Pair]
) -> tuple[Agreement, list[dict[str, Any]]]:
    """Greedy answers of the source model and the bundle on every pair, and their agreement."""
    src_out, bun_out, per_pair = [], [], []
    for ref, tgt in tqdm(pairs, desc="verify", unit="pair", leave=False):
        s, b = source.generate(ref, tgt), bundle_answer(ref, tgt)
        src_out.append(s)
        bun_out.append(b)
        per_pair.append({"source": s[1], "bundle": b[1], "tokens_equal": s[0] == b[0]})
    return summarize(src_out, bun_out), per_pair


def _onnx_answer(root: Path, manifest: dict[str, Any], policy: SizePolicy) -> Callable:
    runner = BundleRunner(Bundle(root, manifest), providers=["CPUExecutionProvider"], vision_plan=False)
    cache: dict[int, Any] = {}

    def answer(ref: np.ndarray, tgt: np.ndarray) -> tuple[list[int], str]:
        key = id(ref)
        if key not in cache:
            cache.clear()
            cache[key] = runner.prefix(policy.apply(ref).image)
        g = runner.generate(policy.apply(tgt).image, prefix=cache[key])
        return g.tokens, g.text

    return answer


def _torch_answer(root: Path, policy: SizePolicy, max_new_tokens: int, grammar: GrammarSpec | None) -> Callable:
    runner = SourceModel(load_model(root), policy, max_new_tokens, grammar)
    return runner.generate


def _verify_bundle(
    cfg: ExportConfig, loaded: Any, root: Path, manifest: dict[str, Any], policy: SizePolicy, vs: VerifySet
) -> tuple[Agreement, list[str]]:
    """Source model vs the bundle being written; records the result in ``manifest["verification"]``."""
    spec = GrammarSpec.from_dict(manifest["grammar"]) if manifest.get("grammar") else None
    source = SourceModel(loaded, policy, cfg.max_new_tokens, spec)
    answer = (
        _onnx_answer(root, manifest, policy)
        if cfg.runtime == "onnx"
        else _torch_answer(root, policy, cfg.max_new_tokens, spec)
    )
    agreement, per_pair = verify(source, answer, vs.pairs)
    missed = failures(agreement, cfg.quant, cfg.thresholds)
    manifest["verification"] = {
        "pairs_source": vs.source,
        "reference_cache": cfg.runtime == "onnx",
        "thresholds": cfg.thresholds.model_dump(),
        "required": (
            "identical greedy tokens"
            if cfg.quant == "fp32"
            else "box_iou and decision_agreement thresholds (token agreement reported)"
        ),
        "grammar": spec is not None,
        "agreement": agreement.to_dict(),
        "passed": not missed,
        "failures": missed,
        "enforced": cfg.fail_on_verify,
        "pairs": per_pair,
    }
    return agreement, missed


def run_export(cfg: ExportConfig, log: Log = print) -> ExportResult:
    """Export, verify and write a bundle; raises ``BudgetError``/``BundleError``/``ConfigError`` on refusal."""
    model_dir, _ = check_model_dir(cfg.model)
    _check_out(cfg)
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise missing_extra("torch", "export") from e
    policy = SizePolicy(max_pixels=cfg.max_pixels)
    processor = load_processor(model_dir)
    shape = _shape_from_config(model_dir)
    template = read_template(model_dir) or get_template(DEFAULT_INFERENCE_TEMPLATE)
    if cfg.max_new_tokens is None:  # same answer budget as the vlm engine for this template
        cfg = cfg.model_copy(update={"max_new_tokens": DEFAULT_MAX_NEW_TOKENS[template.think]})
    ids: PromptSegments = prompt_ids(processor, template)
    prompt_tokens = sum(len(s) for s in ids.segments)
    est = estimate(
        shape, cfg.quant, cfg.max_pixels, prompt_tokens, cfg.max_new_tokens, cfg.block_size, vision_fp16=cfg.vision_fp16
    )
    log(f"{est.describe()} [from the config; budget {cfg.budget_gb:g} GiB]")
    check_budget(est, cfg.budget_gb)
    vs = _verify_set(cfg, model_dir)  # a bad --verify file fails now, not after the export work
    log(f"verify set: {len(vs.pairs)} pairs ({vs.source})")

    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.out.name}.", suffix=".tmp", dir=cfg.out.parent))
    try:
        with tqdm(total=4, desc=f"export {cfg.runtime} {cfg.quant}", unit="step") as bar:
            bar.set_postfix_str("load source model")
            loaded = load_model(model_dir)
            spec = _image_spec(loaded)
            if cfg.runtime == "onnx":
                graphs = _write_onnx(loaded, model_dir, tmp, cfg, spec, policy, bar)
            else:
                graphs = _write_torch(model_dir, tmp, cfg, bar)
        manifest = _manifest(cfg, model_dir, loaded, ids, spec, policy, graphs)
        if cfg.runtime == "onnx":
            max_patches = cfg.max_pixels // (spec.patch_size**2)
            manifest["tensorrt"] = tensorrt_vision(tmp / "vision.onnx", tmp / "vision_fp16.plan", max_patches)
            if not manifest["tensorrt"]["built"]:
                log(f"TensorRT vision engine skipped: {manifest['tensorrt']['reason']}")
        names = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file() and f.name != MANIFEST_NAME)
        manifest["files"] = file_entries(tmp, names)
        agreement, missed = _verify_bundle(cfg, loaded, tmp, manifest, policy, vs)
        final = estimate(
            shape,
            cfg.quant,
            cfg.max_pixels,
            prompt_tokens,
            cfg.max_new_tokens,
            cfg.block_size,
            weights_bytes=_weight_bytes(manifest),
        )
        manifest["memory"] = {**final.to_dict(), "budget_gb": cfg.budget_gb}
        log(f"{final.describe()} [bundle files]")
        log(_agreement_line(cfg.quant, agreement, missed))
        if missed and cfg.fail_on_verify:
            raise BundleError(
                f"verification failed for the {cfg.quant} bundle: {'; '.join(missed)}; "
                f"no bundle was written{_failure_hint(vs)}"
            )
        check_budget(final, cfg.budget_gb)
        write_manifest(tmp, manifest)
        if cfg.out.exists():
            shutil.rmtree(cfg.out)
        os.replace(tmp, cfg.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(cfg.out, manifest, agreement, missed)


def _weight_bytes(manifest: dict[str, Any]) -> int:
    skip = ("tokenizer", "json", "jinja", "plan")
    return sum(int(e["bytes"]) for n, e in manifest["files"].items() if not n.endswith(skip))


def _agreement_line(quant: str, a: Agreement, missed: list[str]) -> str:
    state = "PASSED" if not missed else "FAILED: " + "; ".join(missed)
    return (
        f"verification ({a.pairs} pairs, {quant}): box IoU {a.box_iou:.3f}, decisions {a.decision_agreement:.0%}; "
        f"reported: identical tokens {a.exact_token_match:.0%}, token agreement {a.token_agreement:.3f} -> {state}"
    )


def _manifest(
    cfg: ExportConfig,
    model_dir: Path,
    loaded: Any,
    ids: PromptSegments,
    spec: ImageSpec,
    policy: SizePolicy,
    graphs: dict[str, str],
) -> dict[str, Any]:
    template = template_of(loaded)
    quant: dict[str, Any] = {"mode": cfg.quant}
    if cfg.runtime == "onnx":
        quant.update(
            decoder={
                "int4": "MatMulNBits weight-only (symmetric)",
                "int8": "dynamic int8 MatMul",
                "fp16": "fp16 weights and compute, fp32 io",
                "fp32": "fp32",
            }[cfg.quant],
            vision="fp16" if cfg.vision_fp16 else "fp32",
            embeddings="fp32" if cfg.quant == "fp32" else "fp16",
        )
        if cfg.quant == "int4":
            quant["block_size"] = cfg.block_size
    else:
        quant["bitsandbytes"] = TORCH_QUANT[cfg.quant]
    return {
        "format_version": BUNDLE_FORMAT_VERSION,
        "exporter": {
            "name": EXPORTER,
            "version": __version__,
            "python": platform.python_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "source": {"path": str(model_dir.resolve()), "sha256": source_hash(model_dir), "identity": loaded.identity},
        "runtime": cfg.runtime,
        "quantization": quant,
        "model": _model_info(loaded),
        "prompt": {
            "template_id": template.id,
            "template": template.to_dict(),
            "text": ids.text,
            "segments": [list(s) for s in ids.segments],
        },
        "generation": {
            "max_new_tokens": cfg.max_new_tokens,
            "decoding": "greedy under the answer grammar" if cfg.grammar else "greedy",
        },
        **({"grammar": grammar_for(template, cfg.max_new_tokens).to_dict()} if cfg.grammar else {}),
        "coordinates": COORDINATES,
        "size_policy": {"max_pixels": policy.max_pixels, "min_pixels": policy.min_pixels, "factor": policy.factor},
        "preprocessing": spec.to_dict(),
        "graphs": graphs,
    }
