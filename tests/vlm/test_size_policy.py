"""Size policy: model-input sizes, exact box mapping back to source pixels, and the processor not resizing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from differad_edge.boxes import Box
from differad_edge.coords import to_model_scale
from differad_edge.errors import ConfigError, ImageError
from differad_edge.vlm.size_policy import SizePolicy


@given(w=st.integers(8, 4000), h=st.integers(8, 4000))
@settings(max_examples=200, deadline=None)
def test_target_size_on_grid_within_bounds_aspect_kept(w: int, h: int) -> None:
    if max(w, h) / min(w, h) > 200:
        return
    policy = SizePolicy(max_pixels=640_000, min_pixels=4096, factor=32)
    w2, h2 = policy.target_size((w, h))
    assert w2 % 32 == 0
    assert h2 % 32 == 0
    assert 4096 <= w2 * h2 <= 640_000
    if min(w2, h2) >= 64:  # aspect kept up to rounding each side to the 32 grid
        assert abs((w2 / h2) / (w / h) - 1) <= 3 * 32 / min(w2, h2)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((800, 800), (800, 800)),  # already on the grid: untouched (625 tokens)
        ((256, 256), (256, 256)),
        ((1920, 1080), (1056, 576)),  # downscaled under 640k pixels, 16:9 kept
        ((100, 50), (96, 64)),  # rounded to the 32 grid, 4096 px minimum reached
    ],
)
def test_known_sizes(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert SizePolicy().target_size(size) == expected


def test_box_maps_back_exactly_for_non_square_frame() -> None:
    img = np.zeros((1080, 1920, 3), np.uint8)
    resized = SizePolicy().apply(img)
    assert resized.size == (1056, 576)
    assert resized.source_size == (1920, 1080)
    # A defect at known source pixels, expressed on the model's grid of the resized image, maps back.
    truth = Box(480, 270, 960, 810)
    model_box = to_model_scale(resized.transform.apply_box(truth), *resized.size)
    assert model_box == Box(250, 250, 500, 750)
    back = resized.box_to_source(model_box)
    assert back.as_tuple() == pytest.approx(truth.as_tuple(), abs=1e-9)


def test_untouched_image_is_identity() -> None:
    img = np.random.default_rng(0).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    resized = SizePolicy().apply(img)
    assert resized.transform.is_identity
    assert resized.image is img


@pytest.mark.parametrize(
    "kwargs", [{"factor": 0}, {"min_pixels": 100}, {"max_pixels": 2048, "min_pixels": 4096}, {"factor": 2.5}]
)
def test_bad_policy_is_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SizePolicy(**kwargs)


def test_bad_images_are_image_errors() -> None:
    with pytest.raises(ImageError, match="aspect ratio"):
        SizePolicy().target_size((10_000, 20))
    with pytest.raises(ImageError, match="uint8 RGB"):
        SizePolicy().apply(np.zeros((64, 64), np.uint8))


def test_processor_keeps_policy_size(tiny_model_dir) -> None:
    from differad_edge.vlm.loader import load_processor

    proc = load_processor(tiny_model_dir)
    img = np.random.default_rng(1).integers(0, 255, (90, 170, 3), dtype=np.uint8)
    resized = SizePolicy(max_pixels=64 * 64 * 4, min_pixels=32 * 32).apply(img)
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}], tokenize=False)
    enc = proc(text=[text], images=[resized.image], return_tensors="pt", do_resize=False)
    _, gh, gw = enc["image_grid_thw"][0].tolist()
    assert (gw * 16, gh * 16) == resized.size == (160, 96)


def test_torch_patchify_and_prompt_ids_match_the_processor(tiny_model_dir) -> None:
    import torch

    from differad_edge.vlm.loader import load_processor
    from differad_edge.vlm.pixels import PromptIds, patchify

    proc = load_processor(tiny_model_dir)
    images = [
        np.random.default_rng(s).integers(0, 255, (h, w, 3), dtype=np.uint8)
        for s, (w, h) in enumerate([(160, 96), (64, 224)])
    ]
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "where?"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    enc = proc(text=[text], images=images, return_tensors="pt", do_resize=False)
    pixels, grids = zip(*(patchify(img, proc.image_processor) for img in images), strict=True)
    assert torch.equal(torch.cat(grids), enc["image_grid_thw"])
    torch.testing.assert_close(torch.cat(pixels), enc["pixel_values"], rtol=0, atol=1e-6)
    ids, types = PromptIds(proc, text).get(((160, 96), (64, 224)), "cpu")
    assert torch.equal(ids, enc["input_ids"])
    assert torch.equal(types, enc["mm_token_type_ids"])
