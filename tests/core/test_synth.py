"""synth: Algorithm 1 (paper III-C) with procedural noise, textures and products, deterministic by seed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.boxes import ZERO_BOX, box_from_mask
from differad_edge.coords import PixelTransform
from differad_edge.dataset import read_pairs
from differad_edge.errors import ConfigError, DatasetError
from differad_edge.fileio import sha256_file
from differad_edge.images import load_image, save_image
from differad_edge.synth import (
    PRODUCT_KINDS,
    TEXTURE_FAMILIES,
    foreground_mask,
    generate_dataset,
    largest_component,
    make_inspection_set,
    perlin_mask,
    perlin_noise,
    procedural_normal,
    procedural_texture,
    synthesize_pair,
)


def _n_components(mask: np.ndarray) -> int:
    return cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)[0] - 1


def test_perlin_noise_is_deterministic_smooth_and_bounded() -> None:
    a = perlin_noise((64, 96), (4, 6), np.random.default_rng(3))
    b = perlin_noise((64, 96), (4, 6), np.random.default_rng(3))
    assert a.shape == (64, 96)
    assert np.array_equal(a, b)
    assert np.abs(a).max() <= 1.0 + 1e-5
    assert a.std() > 0.1
    assert np.abs(np.diff(a, axis=1)).max() < 0.3  # gradient noise is continuous, unlike white noise
    mask = perlin_mask((64, 96), np.random.default_rng(3))
    assert mask.dtype == bool
    assert mask.shape == (64, 96)
    with pytest.raises(ConfigError):
        perlin_mask((8, 8), np.random.default_rng(0), min_scale=3, max_scale=3)


def test_largest_component() -> None:
    m = np.zeros((20, 20), bool)
    m[1:3, 1:3] = True
    m[10:15, 10:16] = True
    out = largest_component(m)
    assert out.sum() == 30
    assert out[12, 12]
    assert not out[1, 1]
    assert not largest_component(np.zeros((5, 5), bool)).any()


@pytest.mark.parametrize("kind", PRODUCT_KINDS)
def test_procedural_products_have_a_clear_foreground(kind: str) -> None:
    img = procedural_normal(128, np.random.default_rng(1), kind)
    assert img.shape == (128, 128, 3)
    assert img.dtype == np.uint8
    assert np.array_equal(img, procedural_normal(128, np.random.default_rng(1), kind))
    fg = foreground_mask(img)
    assert 0.03 < fg.mean() < 0.9  # a part, not the whole frame
    assert not fg[:2].any()
    assert not fg[:, :2].any()


def test_foreground_of_a_texture_is_everything() -> None:
    flat = np.full((64, 64, 3), 120, np.uint8)
    assert foreground_mask(flat).all()
    for family in ("noise", "stripes", "blobs"):  # no plain border colour -> no background
        for seed in range(3):
            assert foreground_mask(procedural_texture(96, np.random.default_rng(seed), family)).all()


@pytest.mark.parametrize("family", TEXTURE_FAMILIES)
def test_texture_families(family: str) -> None:
    t = procedural_texture((80, 48), np.random.default_rng(5), family)
    assert t.shape == (48, 80, 3)
    assert t.dtype == np.uint8
    assert t.std() > 10
    assert np.array_equal(t, procedural_texture((80, 48), np.random.default_rng(5), family))


def test_unknown_names_raise_config_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="stripes"):
        procedural_texture(32, rng, "plaid")
    with pytest.raises(ConfigError, match="pcb"):
        procedural_normal(32, rng, "teapot")
    with pytest.raises(ConfigError):
        procedural_normal(4, rng)


def test_anomalous_pair_follows_algorithm_1() -> None:
    ref = procedural_normal(128, np.random.default_rng(2), "plate")
    fg = foreground_mask(ref)
    for seed in range(6):
        sp = synthesize_pair(ref, None, np.random.default_rng(seed), normal=False, max_angle=0.0, brightness=0.0)
        m = sp.mask > 0
        assert sp.is_anomaly
        assert not sp.normal
        assert 0.0 <= sp.beta <= 0.8
        assert _n_components(sp.mask) == 1  # one connected component
        assert not (m & ~fg).any()  # inside the foreground
        assert sp.box == box_from_mask(sp.mask)
        assert not sp.box.is_zero
        assert np.array_equal(sp.target[~m], ref[~m])  # I_ref (1 - M) outside the mask, untouched
        assert np.abs(sp.target[m].astype(int) - ref[m]).mean() > 0  # something was pasted


def test_pasted_region_is_the_beta_blend() -> None:
    ref = procedural_normal(96, np.random.default_rng(0), "disc")
    tex = np.full((96, 96, 3), 255, np.uint8)  # white texture; augmentation keeps it uniform per channel
    sp = synthesize_pair(ref, [tex], np.random.default_rng(1), normal=False, max_angle=0.0, brightness=0.0)
    m = sp.mask > 0
    tex_val = (sp.target[m].astype(float) - sp.beta * ref[m]) / (1 - sp.beta)  # solve for I_tex per pixel
    assert np.ptp(tex_val, axis=0).max() <= 2.0 / (1 - sp.beta) + 1e-6  # one colour up to rounding


def test_normal_pair_has_zero_box_and_jitter() -> None:
    ref = procedural_normal(96, np.random.default_rng(0), "screw")
    sp = synthesize_pair(ref, None, np.random.default_rng(4), normal=True)
    assert sp.box == ZERO_BOX
    assert not sp.mask.any()
    assert sp.normal
    assert sp.beta is None
    assert not np.array_equal(sp.target, ref)  # brightness jitter + rotation apply to normals too
    assert abs(sp.angle) <= 3.0
    assert 0.92 <= sp.gain <= 1.08


def test_rotation_moves_mask_and_box_together() -> None:
    ref = procedural_normal(128, np.random.default_rng(7), "pcb")
    upright = synthesize_pair(ref, None, np.random.default_rng(11), normal=False, max_angle=0.0, brightness=0.0)
    turned = synthesize_pair(ref, None, np.random.default_rng(11), normal=False, max_angle=20.0, brightness=0.0)
    assert abs(turned.angle) > 0.5
    assert turned.box == box_from_mask(turned.mask)
    rot = cv2.getRotationMatrix2D((64.0, 64.0), turned.angle, 1.0)
    expected = cv2.warpAffine(upright.mask, rot, (128, 128), flags=cv2.INTER_NEAREST)
    assert np.array_equal(turned.mask, expected)


def test_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="uint8 RGB"):
        synthesize_pair(np.zeros((32, 32), np.uint8), None, rng)
    with pytest.raises(ConfigError, match="beta_range"):
        synthesize_pair(np.zeros((32, 32, 3), np.uint8), None, rng, beta_range=(0.5, 0.2))
    with pytest.raises(ConfigError, match="count"):
        generate_dataset("unused", 0, 0)


def test_out_dir_that_is_a_file_is_refused_up_front(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        generate_dataset(blocker, 2, 0, size=64, progress=False)
    assert blocker.read_text() == "x"


def test_generate_dataset_is_deterministic_and_consistent(tmp_path: Path) -> None:
    p1 = generate_dataset(tmp_path / "a", 8, seed=3, size=64, progress=False)
    p2 = generate_dataset(tmp_path / "b", 8, seed=3, size=64, progress=False)
    p3 = generate_dataset(tmp_path / "c", 8, seed=4, size=64, progress=False)
    files = sorted(f.relative_to(tmp_path / "a") for f in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 8 * 3 + 1  # ref, target, mask per pair + preview
    assert all(sha256_file(tmp_path / "a" / f) == sha256_file(tmp_path / "b" / f) for f in files)
    assert p1.read_text() == p2.read_text() != p3.read_text()
    pf = read_pairs(p1)
    assert pf.errors == []
    assert len(pf.pairs) == 8
    assert sum(p.is_normal for p in pf.pairs) == 2  # exactly 25 % normals
    for p in pf.pairs:
        assert p.subset == "synthetic"
        assert p.category in PRODUCT_KINDS
        assert p.box == box_from_mask(load_image(p.mask)[..., 0])  # GT box = tight box of the mask file
        assert load_image(p.target).shape == (64, 64, 3)
    meta = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert meta["seed"] == 3
    assert meta["n_normal"] == 2
    assert meta["count"] == 8


def test_generate_dataset_from_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("bottle/0.png", "bottle/1.png", "cable/0.jpg"):
        save_image(tmp_path / "normals" / name, procedural_normal((120, 90), rng, "disc"))  # non-square: cropped
    for k in range(2):
        save_image(tmp_path / "tex" / f"{k}.png", procedural_texture(50, rng))
    out = generate_dataset(
        tmp_path / "ds", 4, 0, normals=tmp_path / "normals", textures=tmp_path / "tex", size=48, progress=False
    )
    pairs = read_pairs(out).pairs
    assert [p.category for p in pairs] == ["bottle", "bottle", "cable", "bottle"]
    assert load_image(pairs[0].reference).shape == (48, 48, 3)
    with pytest.raises(DatasetError, match="not found"):
        generate_dataset(tmp_path / "x", 2, 0, normals=tmp_path / "nothing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no texture images"):
        generate_dataset(tmp_path / "x", 2, 0, textures=tmp_path / "empty", progress=False)


def _unwarp(img: np.ndarray, warp: PixelTransform) -> np.ndarray:
    m = warp.inverse().matrix[:2].astype(np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_inspection_set_defects_stand_out_from_good_variation(tmp_path: Path) -> None:
    s = make_inspection_set(tmp_path / "insp", kinds=("disc", "pcb", "screw"), goods=3, defects=3, size=96, seed=1)
    assert [p.kind for p in s.products] == ["disc", "pcb", "screw"]
    for prod in s.products:
        assert len(prod.goods) == len(prod.good_warps) == 3
        assert len(prod.defects) == len(prod.boxes) == 3
        ref = prod.reference.astype(int)
        for g, w in zip(prod.goods, prod.good_warps, strict=True):
            assert 0 < np.abs(w.matrix[:2, 2]).max() <= 2.0  # a small shift, as between two frames
            diff = _unwarp(g, w).astype(int) - ref
            assert np.median(np.abs(diff - np.median(diff))) < 6  # aligned, up to the brightness change: close
        for img, box, mask, w in zip(prod.defects, prod.boxes, prod.masks, prod.defect_warps, strict=True):
            assert box == box_from_mask(mask)
            assert not box.is_zero
            diff = _unwarp(img, w).astype(int) - ref
            sel = _unwarp(mask, w) > 0
            assert np.abs(diff - np.median(diff)).max(axis=2)[sel].mean() > 25  # the defect is plainly visible
    pf = read_pairs(s.pairs_path)
    assert pf.errors == []
    assert sum(p.is_normal for p in pf.pairs) == 9
    assert len(pf.pairs) == 18
    assert {p.category for p in pf.pairs} == {"disc-0", "pcb-1", "screw-2"}
    assert {p.subset for p in pf.pairs} == {"inspection"}
    again = make_inspection_set(kinds=("disc", "pcb", "screw"), goods=3, defects=3, size=96, seed=1)
    assert again.pairs_path is None
    assert np.array_equal(again.products[1].defects[2], s.products[1].defects[2])


def test_tiny_foreground_falls_back_to_a_blob_inside_it() -> None:
    ref = np.full((64, 64, 3), 90, np.uint8)
    fg = np.zeros((64, 64), bool)
    fg[30:33, 40:43] = True  # 9 px: smaller than the minimum defect area, Perlin cannot satisfy it
    sp = synthesize_pair(ref, None, np.random.default_rng(0), normal=False, foreground=fg, max_angle=0.0)
    assert (sp.mask > 0).any()
    assert not ((sp.mask > 0) & ~fg).any()
    x1, y1, x2, y2 = sp.box.as_int_list()
    assert 40 <= x1 < x2 <= 43
    assert 30 <= y1 < y2 <= 33
    with pytest.raises(ConfigError, match="foreground"):
        synthesize_pair(ref, None, np.random.default_rng(0), normal=False, foreground=np.zeros((64, 64), bool))
