"""The torch-free preprocessing of the onnx engine against transformers, on the tiny model's processor."""

from __future__ import annotations

import numpy as np
import pytest

from differad_edge.errors import ImageError
from differad_edge.onnxrt.preprocess import ImageSpec, image_tokens, mrope_positions, patchify, vision_host_inputs


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from differad_edge.vlm.loader import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def spec(loaded):
    from differad_edge.export.exporter import _image_spec

    return _image_spec(loaded)


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (128, 224)])  # square, landscape, portrait (w, h)
def test_patchify_matches_hf_processor(loaded, spec, size):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    hf = loaded.processor.image_processor(images=[img], return_tensors="np", do_resize=False)
    pixels, grid = patchify(img, spec)
    np.testing.assert_array_equal(grid, hf["image_grid_thw"])
    np.testing.assert_allclose(pixels, hf["pixel_values"], rtol=0, atol=1e-6)


def test_patchify_refuses_sizes_the_policy_did_not_make(spec):
    with pytest.raises(ImageError, match="multiples of 32"):
        patchify(np.zeros((70, 64, 3), np.uint8), spec)


@pytest.mark.parametrize("grid", [[[1, 4, 4]], [[1, 6, 10]], [[1, 4, 4], [1, 8, 6]]])
def test_vision_host_inputs_match_transformers(loaded, spec, grid):
    import torch
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_interpolation_indices_and_weights,
        get_vision_position_ids,
    )

    visual = loaded.model.model.visual
    g = torch.tensor(grid)
    ii, iw = get_vision_interpolation_indices_and_weights(
        g,
        num_grid_per_side=visual.num_grid_per_side,
        mode=visual.interpolation_mode,
        align_corners=visual.interpolation_align_corners,
        spatial_merge_size=visual.config.spatial_merge_size,
    )
    ours = vision_host_inputs(np.array(grid), spec)
    np.testing.assert_array_equal(ours["interp_indices"], ii.numpy())
    np.testing.assert_allclose(ours["interp_weights"], iw.numpy(), atol=1e-6)
    np.testing.assert_array_equal(ours["rot_pos_ids"], get_vision_position_ids(g, visual.spatial_merge_size).numpy())
    np.testing.assert_array_equal(ours["cu_seqlens"], get_vision_cu_seqlens(g).numpy())


def test_prompt_ids_and_mrope_positions_match_the_processor(loaded, spec):
    import torch
    from differad_edge.export.source import prompt_ids, template_of

    ids = prompt_ids(loaded.processor, template_of(loaded))
    ref = np.full((64, 96, 3), 100, np.uint8)
    tgt = np.full((128, 64, 3), 50, np.uint8)
    enc = loaded.processor(text=[ids.text], images=[ref, tgt], return_tensors="pt", do_resize=False)
    (s0, s1, s2), pad = ids.segments, int(loaded.model.config.image_token_id)
    grids = enc["image_grid_thw"].numpy()
    n_ref, n_tgt = (image_tokens(g[None], spec.merge_size) for g in grids)
    expect = s0 + [pad] * n_ref + s1 + [pad] * n_tgt + s2
    assert enc["input_ids"][0].tolist() == expect
    pos, _ = loaded.model.model.get_rope_index(enc["input_ids"], enc["mm_token_type_ids"], enc["image_grid_thw"])
    ours = mrope_positions(
        [
            ("text", len(s0)),
            ("image", tuple(grids[0])),
            ("text", len(s1)),
            ("image", tuple(grids[1])),
            ("text", len(s2)),
        ],
        spec.merge_size,
    )
    np.testing.assert_array_equal(ours, pos[:, 0].numpy())
    # the suffix continues from the prefix exactly as the full sequence does
    cut = len(s0) + n_ref + len(s1)
    suffix = mrope_positions(
        [("image", tuple(grids[1])), ("text", len(s2))], spec.merge_size, start=int(ours[:, :cut].max()) + 1
    )
    np.testing.assert_array_equal(suffix, ours[:, cut:])
    assert isinstance(pos, torch.Tensor)


def test_image_spec_round_trips_through_the_manifest(spec):
    assert ImageSpec.from_dict(spec.to_dict()) == spec
