"""An image-only Qwen3-VL processor: ``AutoProcessor`` needs torchvision for the video processor,
which has no CPU build for our pinned torch, and DifferAD never feeds video.

``ProcessorMixin`` derives its sub-processors from the ``__init__`` signature, so a subclass without
``video_processor`` saves and loads just the tokenizer, the image processor and the chat template.
The class is built on first use so that importing ``differad_edge.vlm`` does not import torch.
"""

from __future__ import annotations

import functools
from typing import Any

#: The name written into ``processor_config.json`` so other tools see a standard Qwen3-VL folder.
PROCESSOR_CLASS_NAME = "Qwen3VLProcessor"


@functools.cache
def image_only_processor_class() -> type:
    """``Qwen3VLProcessor`` minus the video processor (created lazily, cached)."""
    from transformers import Qwen3VLProcessor

    class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any
        ):
            kwargs.pop("video_processor", None)
            super().__init__(
                image_processor=image_processor,
                tokenizer=tokenizer,
                video_processor=None,
                chat_template=chat_template,
                **kwargs,
            )

    return Qwen3VLImageOnlyProcessor


def pil_image_processor_class() -> type:
    """The PIL backend of the Qwen2-VL image processor (Qwen3-VL's), which needs no torchvision."""
    try:
        from transformers import Qwen2VLImageProcessorPil
    except ImportError:  # older layouts keep it only in the submodule
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    return Qwen2VLImageProcessorPil
