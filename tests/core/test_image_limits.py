"""Issue 13 items 3 and 13: the pixel limit holds before decoding for every format, and a broken
file gives one typed error without decoder chatter on stderr."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from differad_edge.errors import ImageError
from differad_edge.images import decode_gray, decode_image, encode_image, sniff_format


def _noise(h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _hdr_bomb(side: int = 8200) -> bytes:
    """A few bytes of Radiance .hdr claiming side x side pixels (the issue's 8200x8200 / 2.4 GB case)."""
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {side} +X {side}\n".encode() + b"\x02\x02\x20\x08" * 64


@pytest.mark.parametrize(
    "data",
    [
        _hdr_bomb(),
        b"PF\n8200 8200\n-1\n" + b"\x00" * 64,  # PFM
        b"v/1\x01" + b"\x00" * 64,  # OpenEXR magic
        b"P7\nWIDTH 8200\nHEIGHT 8200\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + b"\x00" * 64,  # PAM
        b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64,  # JPEG 2000
        b"\x59\xa6\x6a\x95" + b"\x00" * 64,  # Sun raster
        b"GIF89a" + b"\x00" * 64,
    ],
)
def test_formats_without_a_readable_header_size_are_refused_before_decoding(data: bytes) -> None:
    with pytest.raises(ImageError, match="unsupported or unknown image format"):
        decode_image(data)


def test_the_hdr_bomb_would_really_decode_without_the_check() -> None:
    """The regression is real: OpenCV itself decodes a small .hdr of the claimed size."""
    real = cv2.imencode(".hdr", np.zeros((16, 16, 3), np.float32))[1].tobytes()
    assert cv2.imdecode(np.frombuffer(real, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    with pytest.raises(ImageError, match="unsupported"):
        decode_image(real)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".pgm"])
def test_supported_formats_decode_and_sniff(ext: str) -> None:
    img = _noise()
    data = cv2.imencode(ext, img if ext != ".pgm" else img[..., 0])[1].tobytes()
    assert sniff_format(data) is not None
    out = decode_image(data)
    assert out.shape == (64, 64, 3)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif", ".webp", ".ppm"])
def test_pixel_limit_holds_for_every_supported_format(ext: str) -> None:
    data = cv2.imencode(ext, _noise())[1].tobytes()
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(data, max_pixels=64 * 64 - 1)
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_gray(data, max_pixels=100)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp", ".bmp", ".ppm"])
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_files_give_one_error_and_nothing_on_stderr(
    ext: str, cut: float, capfd: pytest.CaptureFixture
) -> None:
    data = encode_image(_noise(96, 96), ext)
    with pytest.raises(ImageError):
        decode_image(data[: int(len(data) * cut)])
    out, err = capfd.readouterr()
    assert err == "", err
    assert out == "", err


def test_damaged_png_chunk_is_caught_before_libpng(capfd: pytest.CaptureFixture) -> None:
    data = bytearray(encode_image(_noise()))
    i = data.find(b"IDAT")
    data[i + 20 : i + 40] = b"\xff" * 20  # CRC no longer matches
    with pytest.raises(ImageError, match="damaged PNG"):
        decode_image(bytes(data))
    assert capfd.readouterr().err == ""


def test_png_bomb_header_with_valid_crc_is_refused() -> None:
    data = bytearray(encode_image(_noise(8, 8)))
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    with pytest.raises(ImageError, match="100000x100000"):
        decode_image(bytes(data))


def test_jpeg_decodes_like_opencv_and_is_writable(capfd: pytest.CaptureFixture) -> None:
    img = cv2.GaussianBlur(_noise(120, 160), (7, 7), 2)
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        data = cv2.imencode(".jpg", img, params)[1].tobytes()
        ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out = decode_image(data)
        assert np.array_equal(out, ref)
        assert out.flags.writeable
    # a flipped byte that libjpeg only warns about: decoded, and nothing printed
    data = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    data[len(data) // 2] = 0
    decode_image(bytes(data))
    assert capfd.readouterr().err == ""
