"""The one raw-buffer decoder shared by the ROS node and calibration."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from differad_edge.errors import ImageError
from differad_edge.raw_image import image_message_to_rgb


def _msg(encoding: str, pixels: np.ndarray, pad: int = 0, bigendian: bool = False) -> SimpleNamespace:
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1).view(np.uint8) if pixels.dtype != np.uint8 else pixels.reshape(h, -1)
    data = np.hstack([row, np.zeros((h, pad), np.uint8)]).tobytes()
    return SimpleNamespace(
        height=h, width=w, step=row.shape[1] + pad, encoding=encoding, is_bigendian=bigendian, data=data
    )


def test_opencv_alias_8uc3_is_bgr_and_row_padding_is_skipped():
    bgr = np.zeros((8, 9, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    rgb = image_message_to_rgb(_msg("8UC3", bgr, pad=5))
    assert rgb.shape == (8, 9, 3)
    assert rgb[0, 0].tolist() == [0, 0, 200]


def test_big_endian_mono16_and_errors():
    values = np.full((8, 8), 0x1234, np.uint16)
    rgb = image_message_to_rgb(_msg("16UC1", values.astype(">u2"), bigendian=True))
    assert rgb[0, 0].tolist() == [0x1234 // 257] * 3
    with pytest.raises(ImageError, match="unsupported image encoding 'yuv422'"):
        image_message_to_rgb(_msg("yuv422", np.zeros((8, 8, 3), np.uint8)))
    short = _msg("rgb8", np.zeros((8, 8, 3), np.uint8))
    short.data = short.data[:-10]
    with pytest.raises(ImageError, match="truncated image data"):
        image_message_to_rgb(short)
