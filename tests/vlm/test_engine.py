"""VLM engine on the tiny random Qwen3-VL: prefix-cache parity, invalidation, robustness, quantization.

A random model answers garbage, which is what the robustness tests need; the parity tests compare
token ids, which a random model makes varied (``initializer_range=0.4``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from differad_edge.engines import Reason, Reference, Verdict, create_engine
from differad_edge.engines.vlm import VLMEngine, detection_from_text
from differad_edge.errors import ConfigError, ImageError
from differad_edge.prompts import THINK_TEMPLATE
from differad_edge.vlm.loader import load_model
from differad_edge.vlm.size_policy import SizePolicy

MAX_NEW = 12


def _img(seed: int, w: int = 160, h: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


@pytest.fixture()
def engine(tiny) -> VLMEngine:
    # unconstrained (transformers' generate): the prefix-cache parity and garbage-robustness tests; the
    # answer grammar's own tests are in test_grammar.py
    return VLMEngine(
        tiny, max_new_tokens=MAX_NEW, size_policy=SizePolicy(max_pixels=160 * 96, min_pixels=1024), grammar=False
    )


def _tokens(engine: VLMEngine, handle, target: np.ndarray, cached: bool) -> list[int]:
    engine.reference_cache = cached
    return engine.generate(handle, [engine.size_policy.apply(target)]).tokens[0]


def _vanilla_tokens(tiny, reference: np.ndarray, target: np.ndarray, template) -> list[int]:
    """Plain ``model.generate`` on the full two-image prompt: no engine code in the loop."""
    proc = tiny.processor
    text = proc.apply_chat_template(template.messages(), tokenize=False, add_generation_prompt=True)
    enc = proc(text=[text], images=[reference, target], return_tensors="pt", do_resize=False)
    tiny.model.model.rope_deltas = None
    with torch.inference_mode():
        out = tiny.model.generate(
            **enc, do_sample=False, max_new_tokens=MAX_NEW, stop_strings=["</answer>"], tokenizer=tiny.tokenizer
        )
    tiny.model.model.rope_deltas = None
    return out[0, enc["input_ids"].shape[1] :].tolist()


def test_cached_tokens_equal_uncached_across_targets_and_reference_switch(engine: VLMEngine, tiny) -> None:
    targets = [_img(100 + i) for i in range(4)]
    seen = []
    for ref_seed in (1, 2):
        engine.reference_cache = True
        handle = engine.prepare(Reference(_img(ref_seed)))
        kv = handle.prefix.cache.layers
        snapshot = [(layer.keys.clone(), layer.values.clone()) for layer in kv]
        for tgt in targets:
            cached = _tokens(engine, handle, tgt, cached=True)
            uncached = _tokens(engine, handle, tgt, cached=False)
            assert cached == uncached
            seen.append(tuple(cached))
        # Frames share the prefix tensors; none of them may have written into them.
        assert all(
            torch.equal(k, layer.keys) and torch.equal(v, layer.values)
            for (k, v), layer in zip(snapshot, kv, strict=True)
        )
        assert _vanilla_tokens(tiny, _img(ref_seed), targets[0], engine.template)[: len(seen[-4])] == list(seen[-4])
    assert len(set(seen)) > 1, "outputs do not depend on the images: the parity check would be vacuous"
    assert engine.prefixes.builds == 2
    engine.reference_cache = True
    engine.prepare(Reference(_img(1)))  # switching back hits the cache
    assert engine.prefixes.builds == 2
    assert engine.prefixes.hits >= 1


def test_template_and_size_policy_changes_invalidate_prefix(engine: VLMEngine) -> None:
    handle = engine.prepare(Reference(_img(3)))
    key0 = handle.prefix.key
    target = _img(200)
    engine.detect(handle, target)
    assert engine.prefixes.builds == 1

    engine.template = THINK_TEMPLATE
    assert _tokens(engine, handle, target, cached=True) == _tokens(engine, handle, target, cached=False)
    engine.reference_cache = True
    engine.detect(handle, target)
    key1 = handle.prefix.key
    assert engine.prefixes.builds == 2
    assert key1.template != key0.template
    assert key1.reference == key0.reference

    engine.size_policy = SizePolicy(max_pixels=64 * 64, min_pixels=1024)
    cached = _tokens(engine, handle, target, cached=True)
    key2 = handle.prefix.key
    assert engine.prefixes.builds == 3
    assert key2.size_policy != key1.size_policy
    assert handle.resized.size == (64, 32)
    assert cached == _tokens(engine, handle, target, cached=False)

    other = VLMEngine(load_model(engine.loaded.info["path"], dtype="bf16"), max_new_tokens=2)
    assert other.prefix_key(handle.reference).model != key2.model


def test_garbage_output_is_invalid_detection_not_exception(engine: VLMEngine) -> None:
    handle = engine.prepare(Reference(_img(4)))
    det = engine.detect(handle, _img(300))
    assert det.engine == "vlm"
    assert det.text is not None
    # The random model cannot produce a box; whatever it said is kept for debugging.
    assert det.verdict is Verdict.NOT_INSPECTED  # an unparsable answer is never OK
    assert det.not_inspected is Reason.INVALID_ANSWER
    assert det.box is None
    assert det.message
    assert {"preprocess", "vision", "prefill", "decode", "parse", "total"} <= set(det.timings_ms)
    assert det.to_json()["valid"] is False


@pytest.mark.parametrize(
    ("text", "valid", "reason"),
    [
        ("", False, "empty output"),
        ("\x00\ufffd<answer>(12,", False, "no box found"),
        ("<answer>(100,200),(1200,300)</answer>", False, "outside"),
        ("<answer>(500,500),(400,600)</answer>", False, "degenerate"),
        ("<answer>(0,0),(0,0)</answer>", True, None),
    ],
)
def test_postprocessing_of_raw_text(text: str, valid: bool, reason: str | None) -> None:
    resized = SizePolicy().apply(_img(0, 640, 360))
    det = detection_from_text(text, resized, score=0.9)
    assert det.valid is valid
    assert det.text == text
    assert det.box is None
    assert not det.anomaly
    if reason:
        assert reason in det.message
        assert det.verdict is Verdict.NOT_INSPECTED
    else:
        assert det.verdict is Verdict.OK


def test_answer_maps_to_target_pixels_for_non_square_frames() -> None:
    # 1280x720 is resized by the policy to 1056x576 (not a uniform scale of the 0-1000 grid's meaning).
    resized = SizePolicy().apply(np.zeros((720, 1280, 3), np.uint8))
    assert resized.size == (1056, 576)
    det = detection_from_text("<answer>(100,250),(500,750)</answer>", resized, score=0.5)
    assert det.valid
    assert det.anomaly
    assert det.score == 0.5
    assert det.box.as_tuple() == pytest.approx((128.0, 180.0, 640.0, 540.0))
    tall = SizePolicy(max_pixels=96 * 192).apply(np.zeros((500, 200, 3), np.uint8))
    det = detection_from_text("[0, 500, 1000, 1000]", tall)
    assert det.box.as_tuple() == pytest.approx((0.0, 250.0, 200.0, 500.0))


def test_detect_handles_odd_modes_and_rejects_junk(engine: VLMEngine) -> None:
    handle = engine.prepare(Reference(_img(5)))
    gray16 = np.random.default_rng(0).integers(0, 65535, (150, 230), dtype=np.uint16)
    rgba = np.dstack([_img(6, 200, 120), np.full((120, 200), 255, np.uint8)])
    for odd in (gray16, rgba):
        assert engine.detect(handle, odd).engine == "vlm"
    with pytest.raises(ImageError):
        engine.detect(handle, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError):
        engine.detect(handle, np.full((64, 64, 3), np.nan, np.float32))


def test_fast_preprocess_gives_the_processor_path_tokens(tiny) -> None:
    policy = SizePolicy(max_pixels=160 * 96, min_pixels=1024)
    fast, slow = (VLMEngine(tiny, max_new_tokens=MAX_NEW, size_policy=policy, fast_preprocess=f) for f in (True, False))
    for cached in (True, False):
        fast.reference_cache = slow.reference_cache = cached
        hf, hs = fast.prepare(Reference(_img(11))), slow.prepare(Reference(_img(11)))
        for seed in (600, 601):
            target = policy.apply(_img(seed))
            assert fast.generate(hf, [target]).tokens == slow.generate(hs, [target]).tokens


def test_batch_matches_single_and_mixed_sizes(engine: VLMEngine) -> None:
    handle = engine.prepare(Reference(_img(7)))
    targets = [_img(400), _img(401), _img(402, 96, 160), _img(403)]
    batch = engine.detect_batch(handle, targets)
    single = [engine.detect(handle, t) for t in targets]
    assert [d.text for d in batch] == [d.text for d in single]
    assert batch[0].timings_ms["batch"] == 3.0
    assert "batch" not in batch[2].timings_ms


def test_static_kv_cache_gives_the_dynamic_cache_tokens(engine: VLMEngine) -> None:
    """The static cache (fixed shapes, compiled by generate on CUDA) answers exactly as the dynamic
    one: cached and uncached, single and batched, and leaves the shared reference prefix untouched."""
    handle = engine.prepare(Reference(_img(8)))
    targets = [_img(500 + i) for i in range(3)] + [_img(503, 96, 160)]
    resized = [engine.size_policy.apply(t) for t in targets]
    expected = {}
    for cached in (True, False):
        engine.reference_cache = cached
        engine.kv_cache = "dynamic"
        expected[cached] = [engine.generate(handle, [r]).tokens[0] for r in resized]
    kv = handle.prefix.cache.layers
    snapshot = [(layer.keys.clone(), layer.values.clone()) for layer in kv]
    engine.kv_cache = "static"
    for cached in (True, False):
        engine.reference_cache = cached
        assert [engine.generate(handle, [r]).tokens[0] for r in resized] == expected[cached]
        assert engine.generate(handle, resized[:3]).tokens == expected[cached][:3]  # a batch of one size
    assert expected[True] == expected[False]
    assert len({tuple(t) for t in expected[True]}) > 1
    assert all(
        torch.equal(k, layer.keys) and torch.equal(v, layer.values) for (k, v), layer in zip(snapshot, kv, strict=True)
    )
    detections = engine.detect_batch(handle, targets)
    engine.kv_cache = "dynamic"
    assert [d.text for d in detections] == [d.text for d in engine.detect_batch(handle, targets)]


def test_create_engine_by_name_and_bad_options(tiny_model_dir: Path) -> None:
    eng = create_engine(
        "vlm",
        model=str(tiny_model_dir),
        reference_cache=False,
        dtype="fp32",
        template_id=THINK_TEMPLATE.id,
        max_new_tokens=4,
    )
    info = eng.describe()
    assert info["engine"] == "vlm"
    assert info["template"] == THINK_TEMPLATE.id
    assert info["reference_cache"] is False
    assert info["size_policy"] == SizePolicy().key
    eng.close()
    eng.close()
    with pytest.raises(ConfigError, match="multiple"):
        VLMEngine(eng.loaded, size_policy=SizePolicy(factor=48))
    with pytest.raises(ConfigError):
        VLMEngine(eng.loaded, max_new_tokens=0)
    with pytest.raises(ConfigError, match="unknown prompt template"):
        VLMEngine(eng.loaded, template_id="nope")
    with pytest.raises(ConfigError, match="size_policy"):
        VLMEngine(eng.loaded, size_policy={"max_px": 10})


def test_importing_the_engine_does_not_import_torch() -> None:
    code = (
        "import sys, differad_edge.engines.vlm, differad_edge.vlm.factory, differad_edge.vlm.loader; "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_bitsandbytes_quantized_model_runs(tiny_model_dir: Path, quant: str) -> None:
    eng = VLMEngine(
        tiny_model_dir, quant=quant, max_new_tokens=4, size_policy=SizePolicy(max_pixels=4096, min_pixels=1024)
    )
    layers = {type(m).__name__ for m in eng.model.modules()}
    assert ("Linear4bit" if quant == "nf4" else "Linear8bitLt") in layers
    handle = eng.prepare(Reference(_img(8)))
    det = eng.detect(handle, _img(9))
    assert det.engine == "vlm"
    assert det.text is not None
    assert det.timings_ms["decode"] > 0


@pytest.mark.slow
def test_small_model_cache_parity(tmp_path: Path) -> None:
    from differad_edge.vlm.factory import make_model

    small = load_model(make_model(tmp_path / "small", size="small", seed=0))
    engine = VLMEngine(small, max_new_tokens=6, size_policy=SizePolicy(max_pixels=256 * 256))
    handle = engine.prepare(Reference(_img(10, 256, 256)))
    for seed in (500, 501):
        tgt = _img(seed, 256, 256)
        assert _tokens(engine, handle, tgt, cached=True) == _tokens(engine, handle, tgt, cached=False)


def test_settings_replace_the_typed_config_in_any_order(tiny) -> None:
    """The setters are thin wrappers over the immutable ``VLMConfig``: each replaces it whole and
    re-checks it against the model, so two orders give one config and a refused change changes nothing."""
    import dataclasses

    a, b = VLMEngine(tiny, max_new_tokens=MAX_NEW), VLMEngine(tiny, max_new_tokens=MAX_NEW)
    a.template, a.paraphrase, a.size_policy = THINK_TEMPLATE, 3, SizePolicy(max_pixels=64 * 64, min_pixels=1024)
    b.size_policy, b.paraphrase, b.template = SizePolicy(max_pixels=64 * 64, min_pixels=1024), 3, THINK_TEMPLATE
    assert a.config == b.config
    assert a.template == THINK_TEMPLATE
    assert a.paraphrase == 3
    before = a.config
    with pytest.raises(ConfigError, match="multiple"):
        a.size_policy = SizePolicy(factor=48)  # the model's patch grid is 32
    with pytest.raises(ConfigError, match="max_batch=0"):
        a.max_batch = 0
    with pytest.raises(ConfigError, match="dtype"):
        a.config = dataclasses.replace(a.config, dtype="bf16")  # a load option: a new engine, not a setting
    assert a.config is before
    a.config = dataclasses.replace(a.config, max_batch=2, kv_cache="static", max_new_tokens=None)
    assert (a.max_batch, a.kv_cache, a.max_new_tokens) == (2, "static", 512)  # the thinking template's budget


def test_bad_options_fail_before_the_model_loads(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"  # loading it would raise ModelLoadError: the option check came first
    with pytest.raises(ConfigError, match="unknown prompt template"):
        VLMEngine(missing, template_id="nope")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        VLMEngine(missing, max_new_tokens=-1)
    with pytest.raises(ConfigError, match="kv_cache='paged'"):
        VLMEngine(missing, kv_cache="paged")


def test_load_options_are_fixed_once_the_weights_are_loaded(engine: VLMEngine) -> None:
    from dataclasses import replace

    with pytest.raises(ConfigError, match="dtype choose how the weights load; build a new VLMEngine"):
        engine.config = replace(engine.config, dtype="bf16", max_new_tokens=3)
    assert engine.config.dtype == "fp32"
    assert engine.max_new_tokens == MAX_NEW  # nothing of the refused config was taken
    engine.config = replace(engine.config, max_new_tokens=3)
    assert engine.max_new_tokens == 3
