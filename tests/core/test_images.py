"""images: path / bytes / array sources, 8/16-bit, gray/RGB/BGR/RGBA stated explicitly, typed errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.errors import ImageError
from differad_edge.images import (
    MAX_PIXELS,
    decode_image,
    encode_image,
    image_size,
    load_image,
    save_image,
    to_gray,
    to_rgb8,
)


@pytest.fixture
def rgb() -> np.ndarray:
    """A 24x16 image whose channels differ, so any swap shows."""
    img = np.zeros((16, 24, 3), np.uint8)
    img[..., 0] = 200  # R
    img[..., 1] = np.arange(24, dtype=np.uint8)[None, :] * 5  # G ramp
    img[..., 2] = 30  # B
    return img


def _png_claiming(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR was rewritten to claim another size (CRC fixed): a decompression bomb."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_path_bytes_and_array_agree(tmp_path: Path, rgb: np.ndarray) -> None:
    p = tmp_path / "a.png"
    save_image(p, rgb)
    assert np.array_equal(load_image(p), rgb)
    assert np.array_equal(load_image(str(p)), rgb)
    assert np.array_equal(load_image(p.read_bytes()), rgb)
    assert np.array_equal(load_image(bytearray(p.read_bytes())), rgb)
    assert np.array_equal(load_image(rgb), rgb)
    assert image_size(rgb) == (24, 16)


def test_files_are_read_as_rgb_not_bgr(tmp_path: Path, rgb: np.ndarray) -> None:
    p = tmp_path / "cv.png"
    cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # OpenCV writes BGR
    out = load_image(p)
    assert out[0, 0, 0] == 200
    assert out[0, 0, 2] == 30


def test_bgr_array_is_swapped_when_stated(rgb: np.ndarray) -> None:
    bgr = rgb[..., ::-1].copy()
    assert np.array_equal(load_image(bgr, channel_order="bgr"), rgb)
    assert np.array_equal(to_rgb8(bgr, "bgr"), rgb)
    assert not np.array_equal(to_rgb8(bgr, "rgb"), rgb)  # stating the wrong order really differs


def test_rgba_and_bgra(rgb: np.ndarray) -> None:
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(to_rgb8(rgba, "rgba"), rgb)
    assert np.array_equal(to_rgb8(rgba, "rgb"), rgb)  # 4 channels with "rgb" means rgba
    bgra = np.dstack([rgb[..., ::-1], rgba[..., 3]])
    assert np.array_equal(to_rgb8(bgra, "bgra"), rgb)
    assert np.array_equal(to_rgb8(bgra, "bgr"), rgb)


def test_gray_is_replicated(tmp_path: Path) -> None:
    g = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (12, 1))
    for src in (g, g[..., None]):
        out = to_rgb8(src, "gray")
        assert out.shape == (12, 24, 3)
        assert np.array_equal(out[..., 0], g)
        assert np.array_equal(out[..., 2], g)
    p = tmp_path / "g.png"
    cv2.imwrite(str(p), g)
    assert np.array_equal(load_image(p)[..., 1], g)
    assert np.array_equal(to_gray(to_rgb8(g, "gray")), g)


def test_16_bit_files_and_arrays_are_scaled(tmp_path: Path) -> None:
    g16 = np.tile(np.array([0, 257, 32896, 65535], np.uint16), (10, 4))  # 10x16
    p = tmp_path / "g16.png"
    assert cv2.imwrite(str(p), g16)
    out = load_image(p)
    assert out.dtype == np.uint8
    assert out.shape == (10, 16, 3)
    assert out[0, :4, 0].tolist() == [0, 1, 128, 255]
    c16 = np.zeros((10, 12, 3), np.uint16)
    c16[..., 2] = 65535  # red in BGR order
    p2 = tmp_path / "c16.png"
    assert cv2.imwrite(str(p2), c16)
    assert load_image(p2)[0, 0].tolist() == [255, 0, 0]
    assert to_rgb8(c16, "bgr")[0, 0].tolist() == [255, 0, 0]


def test_float_and_bool_arrays() -> None:
    f = np.full((8, 8, 3), 0.5, np.float32)
    assert to_rgb8(f)[0, 0].tolist() == [128, 128, 128]
    b = np.zeros((8, 8), bool)
    b[0, 0] = True
    assert to_rgb8(b, "gray")[0, 0].tolist() == [255, 255, 255]
    assert to_rgb8(b, "gray")[1, 1, 0] == 0


@pytest.mark.parametrize(
    ("arr", "order", "match"),
    [
        (np.zeros((8, 8, 3), np.int32), "rgb", "unsupported image dtype"),
        (np.zeros((8, 8, 3), np.complex64), "rgb", "unsupported image dtype"),
        (np.full((8, 8, 3), 1.5, np.float32), "rgb", r"\[0, 1\]"),
        (np.full((8, 8, 3), np.nan, np.float64), "rgb", "NaN"),
        (np.zeros((0, 8, 3), np.uint8), "rgb", "empty"),
        (np.zeros((4, 8, 3), np.uint8), "rgb", "too small"),
        (np.zeros((8, 8, 3, 2), np.uint8), "rgb", "HxW"),
        (np.zeros((8, 8, 2), np.uint8), "rgb", "channels"),
        (np.zeros((8, 8, 3), np.uint8), "gray", "channels"),
    ],
)
def test_bad_arrays_raise_image_error(arr: np.ndarray, order: str, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        to_rgb8(arr, order)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "unsupported or unknown image format"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "damaged PNG|truncated PNG"),  # a PNG signature with garbage after it
    ],
)
def test_corrupt_bytes_raise_image_error(data: bytes, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        decode_image(data)


def test_truncated_file_names_the_path(tmp_path: Path, rgb: np.ndarray) -> None:
    p = tmp_path / "cut.png"
    p.write_bytes(encode_image(np.repeat(np.repeat(rgb, 8, 0), 8, 1))[:60])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(p)


@pytest.mark.parametrize("side", [9000, 15000, 100000])  # over our limit, over PIL's bomb limit, over OpenCV's
def test_absurdly_large_headers_are_refused_before_decoding(side: int) -> None:
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(_png_claiming(side, side))


def test_max_pixels_is_configurable(rgb: np.ndarray) -> None:
    data = encode_image(rgb)
    with pytest.raises(ImageError, match="exceeds"):
        decode_image(data, max_pixels=100)
    assert decode_image(data, max_pixels=MAX_PIXELS).shape == rgb.shape


def test_missing_paths_and_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path)  # a folder is not an image file
    with pytest.raises(ImageError, match="unsupported image source"):
        load_image(12345)  # type: ignore[arg-type]
    with pytest.raises(ImageError):
        to_rgb8([[1, 2], [3, 4]])  # type: ignore[arg-type]


def test_save_is_atomic_and_lossless(tmp_path: Path, rgb: np.ndarray) -> None:
    p = tmp_path / "sub" / "x.png"
    save_image(p, rgb)
    save_image(p, 255 - rgb)  # overwrite
    assert np.array_equal(load_image(p), 255 - rgb)
    assert sorted(f.name for f in p.parent.iterdir()) == ["x.png"]  # no temp files left behind
    jpg = decode_image(encode_image(rgb, ".jpg"))
    assert jpg.shape == rgb.shape
    assert np.abs(jpg.astype(int) - rgb).mean() < 8
    with pytest.raises(ImageError):
        encode_image(rgb, ".notaformat")
