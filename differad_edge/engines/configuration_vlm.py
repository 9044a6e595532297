"""``VLMConfig``: the typed, immutable options of the ``vlm`` engine (``VLMEngine.config_type``).

Every check that needs no model runs here, before any weights load (a typo must not cost a model
load); the checks against the loaded model (size-policy factor vs patch size, the paraphrase index of
the model's own template) are ``VLMEngine``'s. Importing this module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..prompts import get_template
from ..vlm.loader import Dtype, Quant, _check_options
from ..vlm.size_policy import SizePolicy
from .configuration import check_fields, config_to_dict, option

KV_CACHES = ("dynamic", "static")
KvCache = Literal["dynamic", "static"]


@dataclass(frozen=True)
class VLMConfig:
    """How the ``vlm`` engine runs a Qwen3-VL checkpoint; the checkpoint itself is the engine's
    ``model`` argument (a folder or an already loaded model), not an option."""

    dtype: Dtype = option("fp32", "weights dtype when the engine loads the model")
    device: str = option("cpu", "device the model loads on: cpu, cuda, cuda:N, mps or xpu")
    quant: Quant | None = option(None, "bitsandbytes quantization at load time (CUDA); None = full weights")
    template_id: str | None = option(
        None, "prompt template id; None = the template stored with the model, else the default one"
    )
    max_new_tokens: int | None = option(
        None, "token limit of the answer; None = 64 (512 for a thinking template)", range=(1, 4096)
    )
    size_policy: SizePolicy = option(
        SizePolicy(), "model-input resize rule (a SizePolicy or a mapping of max_pixels, min_pixels, factor)"
    )
    reference_cache: bool = option(True, "reuse the reference's prefix (vision features + KV cache) per target")
    paraphrase: int = option(0, "index of the prompt paraphrase of the template (checked against it)", range=(0, 255))
    max_batch: int = option(8, "most targets of one size decoded as one batch", range=(1, 64))
    max_cached_references: int = option(4, "reference prefixes kept in memory (LRU)", range=(1, 64))
    fast_preprocess: bool = option(True, "patchify in torch and reuse per-size token ids (False = HF processor)")
    kv_cache: KvCache = option("dynamic", "KV cache: dynamic, or static (fixed shapes; compiled on CUDA)")
    grammar: bool = option(True, "decode under the answer grammar: every answer is a valid box")
    lookahead: bool | None = option(
        None,
        "with the grammar: also run each candidate of the next decision (two decisions per pass, same tokens; "
        "dynamic KV cache only); None = on a GPU only (a CPU pass is compute-bound: more tokens per pass cost "
        "more than the passes saved)",
    )

    def __post_init__(self) -> None:
        policy: Any = self.size_policy
        if policy is None or isinstance(policy, dict):
            try:
                policy = SizePolicy(**(policy or {}))
            except TypeError as e:
                raise ConfigError(
                    f"bad size_policy {self.size_policy!r} ({e}); expected a SizePolicy or a dict with "
                    "max_pixels, min_pixels, factor"
                ) from e
            object.__setattr__(self, "size_policy", policy)
        elif not isinstance(policy, SizePolicy):
            raise ConfigError(
                f"bad size_policy {policy!r}; expected a SizePolicy or a dict with max_pixels, min_pixels, factor"
            )
        check_fields(self, "vlm")
        _check_options(self.dtype, self.device, self.quant)  # the loader's own rule, before any load
        if self.template_id is not None:
            get_template(self.template_id).user_text(self.paraphrase)  # unknown id / paraphrase index

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


__all__ = ["KV_CACHES", "VLMConfig"]
