"""Qwen3-VL support: offline model factory, safe loader, image size policy and reference prefix cache.

Nothing here imports torch or transformers at import time; the functions import them when called.
"""

from __future__ import annotations
