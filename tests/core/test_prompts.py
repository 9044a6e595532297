"""prompts: versioned templates, reference image first, think / no-think, 20 paraphrases."""

from __future__ import annotations

import json
import random

import pytest

from differad_edge.errors import ConfigError
from differad_edge.prompts import (
    DEFAULT_INFERENCE_TEMPLATE,
    DEFAULT_TRAIN_TEMPLATE,
    INSTRUCTIONS,
    NOTHINK_TEMPLATE,
    THINK_TEMPLATE,
    PromptTemplate,
    get_template,
)


def test_registry_and_defaults() -> None:
    assert get_template(DEFAULT_TRAIN_TEMPLATE) is THINK_TEMPLATE
    assert THINK_TEMPLATE.think
    assert get_template(DEFAULT_INFERENCE_TEMPLATE) is NOTHINK_TEMPLATE
    assert not NOTHINK_TEMPLATE.think
    assert THINK_TEMPLATE.id != NOTHINK_TEMPLATE.id


def test_unknown_template_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=THINK_TEMPLATE.id):
        get_template("nope-v0")


def test_reference_image_comes_first() -> None:
    msgs = THINK_TEMPLATE.messages(reference="REF", target="TGT", paraphrase=3)
    assert [m["role"] for m in msgs] == ["system", "user"]
    content = msgs[1]["content"]
    assert [c["type"] for c in content] == ["image", "image", "text"]
    assert content[0]["image"] == "REF"
    assert content[1]["image"] == "TGT"
    assert content[2]["text"] == THINK_TEMPLATE.user_text(3)
    placeholders = NOTHINK_TEMPLATE.messages()[1]["content"]
    assert placeholders[0] == {"type": "image"}
    assert placeholders[1] == {"type": "image"}


def test_think_and_nothink_texts() -> None:
    think, nothink = THINK_TEMPLATE.user_text(), NOTHINK_TEMPLATE.user_text()
    assert "<think>" in think
    assert "<answer>" in think
    assert "<think>" not in nothink
    assert "<answer>" in nothink
    assert "(0,0),(0,0)" in think
    assert "0-1000" in think


def test_twenty_distinct_paraphrases_that_say_ignore_lighting() -> None:
    assert len(INSTRUCTIONS) == 20
    assert len(set(INSTRUCTIONS)) == 20
    for text in INSTRUCTIONS:
        low = text.lower()
        assert any(w in low for w in ("light", "illumination", "brightness")), text
    rng = random.Random(0)
    picks = {THINK_TEMPLATE.random_paraphrase(rng) for _ in range(400)}
    assert picks == set(range(20))


@pytest.mark.parametrize("idx", [-1, 20, 100])
def test_paraphrase_index_out_of_range(idx: int) -> None:
    with pytest.raises(ConfigError):
        THINK_TEMPLATE.user_text(idx)


def test_dict_round_trip_through_json() -> None:
    d = json.loads(json.dumps(THINK_TEMPLATE.to_dict()))
    assert PromptTemplate.from_dict(d) == THINK_TEMPLATE
    with pytest.raises(ConfigError, match="id"):
        PromptTemplate.from_dict({"think": True})
