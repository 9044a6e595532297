"""Image I/O with explicit conventions: every image inside the SDK is ``uint8`` RGB ``H x W x 3``.

Sources are paths, encoded bytes or arrays; arrays must say their channel order, because a BGR
frame read as RGB silently swaps colours. 16-bit data is scaled to 8 bits; gray is replicated.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Union

import cv2
import numpy as np

from .errors import ImageError
from .fileio import atomic_write_bytes

ChannelOrder = Literal["rgb", "bgr", "gray", "rgba", "bgra"]
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

#: Refuse images above this many pixels before decoding them (decompression bombs, wrong files).
MAX_PIXELS = 64_000_000
MIN_SIDE = 8
#: Refuse image files above this size without reading them (an uncompressed 64 MP RGB image is 192 MB).
MAX_FILE_BYTES = 1 << 30
#: File extensions read as images when a folder is listed (datasets, calibration sessions, synth sources).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_image(source: ImageSource, channel_order: ChannelOrder = "rgb", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image as ``uint8`` RGB. ``channel_order`` describes *arrays* (files carry their own)."""
    if isinstance(source, np.ndarray):
        return to_rgb8(source, channel_order)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ImageError(
                    f"image file {path} is {path.stat().st_size} bytes, over {MAX_FILE_BYTES}; not an image"
                )
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e}") from e
        try:
            return decode_image(data, max_pixels=max_pixels)
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from e
    raise ImageError(f"unsupported image source type {type(source).__name__}; expected a path, bytes or numpy array")


#: Formats the SDK decodes, by magic bytes. Anything else (Radiance .hdr, OpenEXR, PFM, PAM, JPEG 2000,
#: Sun raster, GIF...) is refused *before* a decoder sees it: for those OpenCV reads the size only while
#: decoding, so no pixel limit could hold for them.
_MAGIC: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("PNG", (b"\x89PNG\r\n\x1a\n",)),
    ("JPEG", (b"\xff\xd8\xff",)),
    ("BMP", (b"BM",)),
    ("TIFF", (b"II*\x00", b"MM\x00*")),
    ("PNM", (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")),
)
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WebP", "PNM")


def sniff_format(data: bytes) -> str | None:
    """The format named by the leading magic bytes, or None when it is not one the SDK decodes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for name, magics in _MAGIC:
        if any(data.startswith(m) for m in magics):
            if name == "PNM" and data[2:3] not in (b" ", b"\t", b"\n", b"\r", b"#"):
                return None  # "P6x..." is not a PNM header (and "P7" / "PF" / "Pf" are other formats)
            return name
    return None


def _png_check(data: bytes) -> None:
    """Walk the PNG chunks and check every CRC before libpng sees the data: a truncated or damaged
    PNG is one typed error here, where libpng would print its own ``libpng error:`` line first."""
    pos, end, seen_iend = 8, len(data), False
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if length > end - pos - 12:
            raise ImageError(f"truncated PNG: chunk {kind!r} at byte {pos} needs {length} bytes, the file ends first")
        body_end = pos + 8 + length
        (crc,) = struct.unpack(">I", data[body_end : body_end + 4])
        if zlib.crc32(data[pos + 4 : body_end]) & 0xFFFFFFFF != crc:
            raise ImageError(f"damaged PNG: chunk {kind!r} at byte {pos} fails its CRC")
        pos = body_end + 4
        if kind == b"IEND":
            seen_iend = True
            break
    if not seen_iend:
        raise ImageError("truncated PNG: no IEND chunk (the file was cut short)")


def _check_header(data: bytes, max_pixels: int) -> str:
    """Refuse unknown formats and absurd sizes from the file header, before a single pixel is decoded.

    Only formats whose size PIL reads from the header (without decoding) are accepted, so the pixel
    limit holds for every decoder. Returns the format name.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(
            f"unsupported or unknown image format (starts with {bytes(data[:8])!r}); use {', '.join(SUPPORTED_FORMATS)}"
        )
    if fmt == "PNG":
        _png_check(data)
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the limit below is ours; PIL's own would hide the real size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = (int(v) for v in im.size)
    except Exception as e:  # any header PIL cannot read is refused: its size is unknown
        raise ImageError(f"corrupt {fmt} header ({type(e).__name__}: {e})") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if w <= 0 or h <= 0:
        raise ImageError(f"{fmt} header claims an empty image of {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(
            f"image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels; pass a larger max_pixels "
            "only for images you trust"
        )
    return fmt


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs decoder failures on stderr itself; the caller gets one typed error instead."""
    try:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - builds without the logging module
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _decode_jpeg(data: bytes, gray: bool) -> tuple[np.ndarray, str]:
    """JPEG through Pillow: the same libjpeg-turbo output as OpenCV (bit-identical for baseline,
    progressive, 4:2:0/4:4:4 and gray files), but a damaged file does not make libjpeg print
    ``Corrupt JPEG data: ...`` on stderr - it decodes or raises."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the size was checked against max_pixels already
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                im = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")  # CMYK, YCbCr...
                arr = np.array(im)  # a writable copy (np.asarray of a Pillow image is read-only)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... for damaged data
        raise ImageError(f"corrupt JPEG image data ({type(e).__name__}: {e})") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if arr.ndim == 2:
        return arr, "gray"
    return (cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY), "gray") if gray else (arr, "rgb")


def _imdecode(data: bytes, flags: int, max_pixels: int) -> tuple[np.ndarray, str]:
    """The one place images are decoded: header checks first, a typed error for every failure.
    Returns the array and its channel order."""
    if not data:
        raise ImageError("empty image data (0 bytes)")
    fmt = _check_header(data, max_pixels)
    if fmt == "JPEG":
        return _decode_jpeg(data, gray=flags == cv2.IMREAD_GRAYSCALE)
    try:
        with _quiet_opencv():
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:  # OpenCV's own size limit (CV_IO_MAX_IMAGE_PIXELS) or a broken header
        raise ImageError(f"image data refused by the decoder: {str(e).strip().splitlines()[-1]}") from e
    if arr is None or arr.size == 0:
        raise ImageError(f"corrupt {fmt} image data (could not decode)")
    return arr, "bgr" if arr.ndim == 3 else "gray"


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded bytes (PNG, JPEG, BMP, TIFF, WebP, PNM) to ``uint8`` RGB, size-checked before decoding."""
    arr, order = _imdecode(bytes(data), cv2.IMREAD_UNCHANGED, max_pixels)
    return to_rgb8(arr, order)  # type: ignore[arg-type]


def decode_gray(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded bytes to ``uint8`` HxW gray (masks), with the same checks as ``decode_image``."""
    return _imdecode(bytes(data), cv2.IMREAD_GRAYSCALE, max_pixels)[0]


def to_rgb8(arr: np.ndarray, channel_order: ChannelOrder = "rgb") -> np.ndarray:
    """Convert an array with a stated channel order to ``uint8`` RGB, checking everything."""
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(arr).__name__}")
    if arr.size == 0:
        raise ImageError(f"empty image array of shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise ImageError(f"image array must be HxW or HxWxC, got shape {arr.shape}")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"image of {w}x{h} is too small (minimum side {MIN_SIDE} px)")
    arr = _to_uint8(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    expected = {"gray": 1, "rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4}[channel_order]
    if channels != expected and not (channels == 1 and channel_order != "gray"):
        if channels in (3, 4) and channel_order in ("rgb", "bgr", "rgba", "bgra"):
            widened: dict[tuple[str, int], ChannelOrder] = {
                ("rgb", 4): "rgba",
                ("bgr", 4): "bgra",
                ("rgba", 3): "rgb",
                ("bgra", 3): "bgr",
            }
            channel_order = widened.get((channel_order, channels), channel_order)
        else:
            raise ImageError(f"array has {channels} channels but channel order {channel_order!r} was stated")
    if channels == 1:
        return np.ascontiguousarray(cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB))
    code = {
        "rgb": None,
        "bgr": cv2.COLOR_BGR2RGB,
        "rgba": cv2.COLOR_RGBA2RGB,
        "bgra": cv2.COLOR_BGRA2RGB,
    }[channel_order]
    return np.ascontiguousarray(arr if code is None else cv2.cvtColor(arr, code))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr.astype(np.uint32) // 257).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError("float image contains NaN or infinity")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageError("float images must lie in [0, 1]; scale them or pass uint8/uint16")
        return np.round(arr * 255.0).astype(np.uint8)
    raise ImageError(f"unsupported image dtype {arr.dtype}; expected uint8, uint16, bool or float in [0, 1]")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def image_size(img: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` — the order every box and transform in the SDK uses."""
    return int(img.shape[1]), int(img.shape[0])


def encode_image(rgb: np.ndarray, ext: str = ".png") -> bytes:
    try:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    except cv2.error as e:  # unknown extension, or an array the codec cannot store
        raise ImageError(
            f"could not encode image as {ext!r} ({str(e).strip().splitlines()[-1]}); use .png, .jpg, .bmp or .tif"
        ) from e
    if not ok:
        raise ImageError(f"could not encode image as {ext}")
    return buf.tobytes()


def save_image(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Save an RGB (or single-channel) image atomically; format from the extension."""
    ext = Path(path).suffix.lower() or ".png"
    atomic_write_bytes(path, encode_image(rgb, ext))
