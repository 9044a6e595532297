"""Bad images and encodings into every image entry point: ``decode_image``, ``decode_gray``,
``load_image`` and the CLIs' image arguments. Allowed outcomes: a decoded uint8 RGB image within the
pixel limit, or one ``ImageError``; never anything on stderr, never another exception."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from differad_edge.errors import ImageError
from differad_edge.images import decode_gray, decode_image, load_image

EXTS = [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"]
SEED_IMAGE = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
ENCODED = {ext: cv2.imencode(ext, SEED_IMAGE)[1].tobytes() for ext in EXTS}
LIMIT = 1_000_000


def _outcome(data: bytes) -> str:
    try:
        out = decode_image(data, max_pixels=LIMIT)
    except ImageError:
        return "error"
    assert out.dtype == np.uint8
    assert out.ndim == 3
    assert out.shape[2] == 3
    assert out.shape[0] * out.shape[1] <= LIMIT
    return "decoded"


@given(st.sampled_from(EXTS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_flips_of_every_format(count, capfd, ext: str, flips: list[tuple[int, int]]) -> None:
    data = bytearray(ENCODED[ext])
    for pos, value in flips:
        data[pos % len(data)] = value
    _outcome(bytes(data))
    count("images")
    assert capfd.readouterr().err == ""


@given(st.sampled_from(EXTS), st.floats(0.0, 1.0))
def test_truncation_of_every_format(count, capfd, ext: str, cut: float) -> None:
    data = ENCODED[ext]
    _outcome(data[: int(len(data) * cut)])
    count("images")
    assert capfd.readouterr().err == ""


@given(
    st.binary(max_size=256),
    st.sampled_from(
        [
            b"",
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"BM",
            b"II*\x00",
            b"P6 ",
            b"RIFF\x00\x00\x00\x00WEBP",
            b"#?RADIANCE\n",
            b"PF\n",
            b"v/1\x01",
        ]
    ),
)
def test_random_bytes_behind_every_magic(count, capfd, tail: bytes, magic: bytes) -> None:
    _outcome(magic + tail)
    count("images")
    assert capfd.readouterr().err == ""


def _png_with_size(w: int, h: int) -> bytes:
    data = bytearray(ENCODED[".png"])
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _bmp_with_size(w: int, h: int) -> bytes:
    data = bytearray(ENCODED[".bmp"])
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def _ppm_with_size(w: int, h: int) -> bytes:
    return f"P6\n{w} {h}\n255\n".encode() + b"\x00" * 64


def _tiff_with_size(w: int, h: int) -> bytes:
    from io import BytesIO

    from PIL import Image, TiffImagePlugin

    buf = BytesIO()
    Image.fromarray(SEED_IMAGE).save(buf, format="TIFF")
    im_bytes = bytearray(buf.getvalue())
    # rewrite ImageWidth (256) / ImageLength (257) tags in IFD0
    ifd = struct.unpack("<I", im_bytes[4:8])[0]
    n = struct.unpack("<H", im_bytes[ifd : ifd + 2])[0]
    for i in range(n):
        off = ifd + 2 + 12 * i
        tag, typ = struct.unpack("<HH", im_bytes[off : off + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            im_bytes[off + 2 : off + 12] = struct.pack("<HII", 4, 1, value)  # LONG
    assert TiffImagePlugin  # plugin registered
    return bytes(im_bytes)


BOMBS = [_png_with_size, _bmp_with_size, _ppm_with_size, _tiff_with_size]


@given(st.sampled_from(BOMBS), st.integers(1001, 70_000), st.integers(1001, 70_000))
def test_claimed_sizes_above_the_limit_are_refused_before_decoding(count, capfd, make, w: int, h: int) -> None:
    with pytest.raises(ImageError):
        decode_image(make(w, h), max_pixels=LIMIT)
    with pytest.raises(ImageError):
        decode_gray(make(w, h), max_pixels=LIMIT)
    count("images", 2)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing", "symlink_loop", "empty", "hdr"])
def test_load_image_paths(count, tmp_path: Path, kind: str) -> None:
    p = tmp_path / "img.png"
    if kind == "fifo":
        import os

        os.mkfifo(p)
    elif kind == "folder":
        p.mkdir()
    elif kind == "symlink_loop":
        p.symlink_to(p)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "hdr":
        p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8200 +X 8200\n" + b"\x00" * 256)
    with pytest.raises(ImageError):
        load_image(p)
    count("images")


BAD_FILES = {
    "hdr_bomb.hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8200 +X 8200\n" + b"\x02\x02\x20\x08" * 1000,
    "png_bomb.png": _png_with_size(9000, 9000),
    "cut.png": ENCODED[".png"][:200],
    "garbage.jpg": b"\xff\xd8\xff" + b"\x13" * 300,
    "text.png": b"not an image",
}


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_cli_image_arguments_end_in_one_line_and_exit_2(count, tmp_path: Path, name: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(BAD_FILES[name])
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), cv2.resize(SEED_IMAGE, (128, 128)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    runs = [
        _cli("differad_edge.cli.main", "inspect", "-r", str(bad), "-t", str(good), cwd=tmp_path),
        _cli("differad_edge.cli.main", "inspect", "-r", str(good), "-t", str(bad), cwd=tmp_path),
    ]
    for proc in runs:
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "libpng" not in proc.stderr, proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(errors) == 1, proc.stderr
        assert errors[0].startswith("differad: error:"), proc.stderr
        count("images")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_calibrate_image_sources_end_in_one_error_line(count, tmp_path: Path, capsys, name: str) -> None:
    from differad_edge.calibration.cli import main as calibrate

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"g{i}.png"), cv2.resize(SEED_IMAGE, (64, 64)))
    (src / ("zz_" + name)).write_bytes(BAD_FILES[name])
    runs = [
        ["capture", "--product", "p", "--source", str(src), "--frames", "8", "--out", str(tmp_path / "s")],
        ["validate", "--store", str(tmp_path / "store"), "--product", "p", "--version", "v0001", "--good", str(src)],
    ]
    from differad_edge.store import ReferenceStore

    ReferenceStore(tmp_path / "store").add_version("p", cv2.resize(SEED_IMAGE, (64, 64)))
    for argv in runs:
        code = calibrate(argv)
        _, err = capsys.readouterr()
        errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
        if Path(name).suffix in (".png", ".jpg"):  # .hdr is not an image extension the sources read
            assert code == 2, err
        assert "Traceback" not in err, err
        assert "libpng" not in err, err
        assert len(errors) <= 1, err
        count("images")
