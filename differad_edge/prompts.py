"""Versioned prompt templates: the one source of truth for training, inference and export.

A template is data (id + texts) so it can be stored with every model and bundle; the reference
image always comes first, which is also what lets the reference prefix be cached.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

SYSTEM_INSTRUCTION = (
    "You are an industrial inspector. You compare a defect-free reference image of a product with a "
    "target image of the same product and localize the anomaly in the target image."
)

ANSWER_SPEC = (
    "Give the box as integer coordinates on a 0-1000 scale of the target image, in the form "
    "(x1,y1),(x2,y2). If the target shows no anomaly, answer (0,0),(0,0)."
)
THINK_FORMAT = "First reason inside <think></think>, then give only the box inside <answer></answer>."
NOTHINK_FORMAT = "Answer only with the box inside <answer></answer>."

#: The paper draws the user instruction from a pool of 20 paraphrases (training); index 0 is the one
#: used at inference. All say: reference first, ignore lighting and viewpoint changes.
INSTRUCTIONS: tuple[str, ...] = (
    "The first image is a normal reference and the second is the target. Compare them, ignore changes "
    "of lighting and viewpoint, and localize the anomalous region of the target.",
    "Image 1 is a defect-free reference; image 2 is the part under inspection. Find the region where the "
    "second image differs from the first in a way that indicates a defect, ignoring illumination and pose.",
    "Compare the target (second image) with the normal reference (first image). Disregard lighting and "
    "small viewpoint changes and box the anomaly in the target.",
    "Using the first image as a known-good sample, inspect the second image and localize any defect. "
    "Lighting and viewpoint differences are not defects.",
    "Look at both images: the first shows a normal product, the second a product to inspect. Where is the "
    "anomaly in the second one? Ignore illumination and camera-angle changes.",
    "Detect the difference that makes the second image anomalous compared with the normal first image; "
    "do not report differences caused by lighting or viewpoint.",
    "You are given a reference image of a good part followed by a target image. Localize the anomalous "
    "region of the target, ignoring global changes in brightness and pose.",
    "Inspect the second image against the first, defect-free image and return the region of the defect. "
    "Changes in lighting or viewpoint do not count.",
    "The first picture is the golden sample. Compare the second picture with it and localize the "
    "anomaly, disregarding lighting and viewpoint variation.",
    "Find the local discrepancy between the normal reference (first) and the target (second) that "
    "indicates an anomaly. Illumination and viewpoint changes are irrelevant.",
    "Compare the two images of the same product. The first is normal. Localize the anomalous area in the "
    "second image; ignore lighting and small geometric changes.",
    "Given a normal reference image and a target image, decide whether the target has an anomaly and "
    "localize it. Do not be distracted by lighting or viewpoint differences.",
    "The reference (first image) is free of defects. Mark the defect in the target (second image), "
    "ignoring differences due to illumination or camera position.",
    "Spot the anomaly: compare the target image (second) with the defect-free reference (first), "
    "ignoring lighting and viewpoint, and box the anomalous region.",
    "Examine the second image for defects by comparing it with the normal first image. Lighting and "
    "viewpoint changes should be ignored.",
    "Use the first image as the standard. Localize where the second image deviates from it because of a "
    "defect, not because of lighting or viewpoint.",
    "Two images follow: a normal reference and a target. Report the region of the target that is "
    "anomalous relative to the reference; ignore lighting and pose changes.",
    "Compare the inspected part (second image) with the good part (first image) and localize the "
    "anomaly. Changes in lighting and viewpoint are not anomalies.",
    "Determine whether the target image (second) contains an anomaly relative to the reference image "
    "(first) and localize it, ignoring illumination and viewpoint differences.",
    "Identify the defective region of the second image by contrasting it with the defect-free first "
    "image; differences in lighting or viewpoint should not be reported.",
)


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt. ``id`` names it in model folders, bundles and manifests."""

    id: str
    think: bool
    system: str = SYSTEM_INSTRUCTION
    instructions: tuple[str, ...] = field(default=INSTRUCTIONS)
    answer_spec: str = ANSWER_SPEC

    def user_text(self, paraphrase: int = 0) -> str:
        if not 0 <= paraphrase < len(self.instructions):
            raise ConfigError(f"paraphrase index {paraphrase} out of range 0..{len(self.instructions) - 1}")
        fmt = THINK_FORMAT if self.think else NOTHINK_FORMAT
        return f"{self.instructions[paraphrase]} {self.answer_spec} {fmt}"

    def random_paraphrase(self, rng: random.Random) -> int:
        return rng.randrange(len(self.instructions))

    def messages(self, reference: Any = None, target: Any = None, paraphrase: int = 0) -> list[dict]:
        """Chat messages in the Hugging Face multimodal format, reference image first.

        ``reference``/``target`` go into the image entries when given (processors that take images
        inside the messages); otherwise plain ``{"type": "image"}`` placeholders are emitted.
        """
        ref = {"type": "image"} if reference is None else {"type": "image", "image": reference}
        tgt = {"type": "image"} if target is None else {"type": "image", "image": target}
        return [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {"role": "user", "content": [ref, tgt, {"type": "text", "text": self.user_text(paraphrase)}]},
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["instructions"] = list(self.instructions)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTemplate:
        try:
            return cls(
                id=str(data["id"]),
                think=bool(data["think"]),
                system=str(data.get("system", SYSTEM_INSTRUCTION)),
                instructions=tuple(data.get("instructions", INSTRUCTIONS)),
                answer_spec=str(data.get("answer_spec", ANSWER_SPEC)),
            )
        except KeyError as e:
            raise ConfigError(f"prompt template is missing key {e}; expected id and think") from e


THINK_TEMPLATE = PromptTemplate(id="differad-r1-think-v1", think=True)
NOTHINK_TEMPLATE = PromptTemplate(id="differad-r1-nothink-v1", think=False)
TEMPLATES: dict[str, PromptTemplate] = {t.id: t for t in (THINK_TEMPLATE, NOTHINK_TEMPLATE)}
#: Training uses the think variant (format reward); edge deployment defaults to no-think (latency).
DEFAULT_TRAIN_TEMPLATE = THINK_TEMPLATE.id
DEFAULT_INFERENCE_TEMPLATE = NOTHINK_TEMPLATE.id

PROMPT_FILE = "differad_prompt.json"  # stored next to a model's config.json and in bundles


def get_template(template_id: str) -> PromptTemplate:
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise ConfigError(f"unknown prompt template {template_id!r}; known: {', '.join(sorted(TEMPLATES))}") from None
