"""Per-frame model inputs without the Hugging Face processor in the loop.

The processor normalizes and patchifies in NumPy on the CPU (~40-70 ms for 800x800 here) and
re-tokenizes the same prompt text every frame. After the size policy, the only per-frame input that
changes is the pixels: the token ids depend on the image *size* alone. So the ids are computed once
per size with the processor itself (exactly its output) and the pixels are patchified in torch on
the model's device. ``tests/vlm`` checks both against the processor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EngineError


def patchify(image: np.ndarray, image_processor: Any, device: Any = "cpu") -> tuple[Any, Any]:
    """uint8 RGB HxWx3 -> (``pixel_values`` [N, C*T*P*P] float32, ``image_grid_thw`` [1, 3]).

    Same layout and arithmetic as the Qwen2-VL image processor with ``do_resize=False``.
    """
    import torch

    ip = image_processor
    patch, temporal, merge = int(ip.patch_size), int(ip.temporal_patch_size), int(ip.merge_size)
    h, w = int(image.shape[0]), int(image.shape[1])
    block = patch * merge
    if h % block or w % block:
        raise EngineError(f"a {w}x{h} image is not a multiple of {block} px; resize it with the size policy first")
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device=device).permute(2, 0, 1).to(torch.float32)
    if ip.do_rescale:
        x = x * float(ip.rescale_factor)
    if ip.do_normalize:
        mean = torch.tensor(ip.image_mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        std = torch.tensor(ip.image_std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        x = (x - mean) / std
    c = x.shape[0]
    gh, gw = h // patch, w // patch
    x = x.unsqueeze(0).expand(temporal, -1, -1, -1)  # a still image is repeated over the temporal patch
    x = x.reshape(1, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gh * gw, c * temporal * patch * patch)
    grid = torch.tensor([[1, gh, gw]], dtype=torch.long, device=x.device)
    return x.contiguous(), grid


class PromptIds:
    """Token ids of a prompt text for given image sizes, computed once per size by the processor."""

    def __init__(self, processor: Any, text: str) -> None:
        self.processor = processor
        self.text = text
        self._ids: dict[tuple[tuple[int, int], ...], tuple[Any, Any]] = {}

    def get(self, sizes: tuple[tuple[int, int], ...], device: Any) -> tuple[Any, Any]:
        """``(input_ids [1, L], mm_token_type_ids [1, L])`` for images of these ``(w, h)`` sizes."""
        if sizes not in self._ids:
            dummies = [np.zeros((h, w, 3), np.uint8) for w, h in sizes]
            enc = self.processor(text=[self.text], images=dummies or None, return_tensors="pt", do_resize=False)
            self._ids[sizes] = (enc["input_ids"], enc["mm_token_type_ids"])
        ids, types = self._ids[sizes]
        return ids.to(device), types.to(device)
