"""Image I/O with explicit conventions: every image inside the SDK is ``uint8`` RGB ``H x W x 3``.

Sources are paths, encoded bytes or arrays; arrays must say their channel order, because a BGR
frame read as RGB silently swaps colours. 16-bit data is scaled to 8 bits; gray is replicated.
"""

from __future__ import annotations

import io
import os
import warnings
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
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e}") from e
        try:
            return decode_image(data, max_pixels=max_pixels)
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from e
    raise ImageError(f"unsupported image source type {type(source).__name__}; expected a path, bytes or numpy array")


def _check_header(data: bytes, max_pixels: int) -> None:
    """Refuse absurd sizes from the file header, before a single pixel is decoded.

    PIL reads the size only; it refuses headers above ``2 * Image.MAX_IMAGE_PIXELS`` itself
    (a decompression bomb): those are too large here as well unless ``max_pixels`` is higher.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib; OpenCV's own limit remains
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:
        if Image.MAX_IMAGE_PIXELS is not None and max_pixels < 2 * Image.MAX_IMAGE_PIXELS:
            raise ImageError(f"image exceeds the limit of {max_pixels} pixels ({e}); pass a larger max_pixels "
                             "only for images you trust") from e
        return
    except Exception:  # unknown or corrupt headers are judged by the decoder below
        return
    if w * h > max_pixels:
        raise ImageError(f"image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels")


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    if not data:
        raise ImageError("empty image data (0 bytes)")
    _check_header(data, max_pixels)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV's own size limit (CV_IO_MAX_IMAGE_PIXELS) or a broken header
        raise ImageError(f"image data refused by the decoder: {str(e).strip().splitlines()[-1]}") from e
    if arr is None:
        raise ImageError("corrupt or unsupported image data (could not decode)")
    return to_rgb8(arr, "bgr" if arr.ndim == 3 else "gray")


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
            channel_order = {("rgb", 4): "rgba", ("bgr", 4): "bgra", ("rgba", 3): "rgb", ("bgra", 3): "bgr"}.get(
                (channel_order, channels), channel_order
            )
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
        raise ImageError(f"could not encode image as {ext!r} ({str(e).strip().splitlines()[-1]}); "
                         "use .png, .jpg, .bmp or .tif") from e
    if not ok:
        raise ImageError(f"could not encode image as {ext}")
    return buf.tobytes()


def save_image(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Save an RGB (or single-channel) image atomically; format from the extension."""
    ext = Path(path).suffix.lower() or ".png"
    atomic_write_bytes(path, encode_image(rgb, ext))
