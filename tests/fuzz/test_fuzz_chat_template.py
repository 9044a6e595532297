"""Issue 13 item 9, "the Jinja sandbox refusing a template": a tampered ``chat_template.jinja`` in a model
folder ends in one ``ModelLoadError`` naming the file and the fix - when the processor renders it
(the vlm engine, at load; the exporter's prompt), and as one ``differad: error:`` line with exit 2 from
the CLI - never a jinja2 traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.errors import ModelLoadError
from differad_edge.prompts import NOTHINK_TEMPLATE

TAMPERED = {
    "sandbox: dunder attribute": "{{ ''.__class__.__mro__ }}",
    "sandbox: subclasses walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "sandbox: function globals": "{{ raise_exception.__globals__.os }}",
    "sandbox: mutating the messages": "{{ messages.append(1) }}",
    "syntax error": "{% for m in messages %}{{ m }}",
    "unknown tag": "{% exec 'import os' %}",
    "raise_exception": "{{ raise_exception('template says no') }}",
    "undefined call": "{{ nothing_here() }}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
}


@pytest.fixture()
def tampered(tiny_model_dir: Path, tmp_path: Path):
    def make(text: str) -> Path:
        root = tmp_path / "m"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(tiny_model_dir, root)
        (root / "chat_template.jinja").write_text(text)
        return root

    return make


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_a_tampered_chat_template_is_one_model_load_error(tampered, count, name: str) -> None:
    from differad_edge.export.source import render_prompt

    from differad_edge.vlm.loader import load_processor, render_chat

    root = tampered(TAMPERED[name])
    processor = load_processor(root)
    for render in (
        lambda: render_chat(processor, NOTHINK_TEMPLATE.messages()),
        lambda: render_prompt(processor, NOTHINK_TEMPLATE),
    ):
        with pytest.raises(ModelLoadError) as e:
            render()
        msg = str(e.value)
        assert f"chat template {root / 'chat_template.jinja'}:" in msg
        assert "restore it from the original checkpoint" in msg
        if name.startswith("sandbox"):
            assert "the Jinja sandbox refused it (SecurityError" in msg
    count("models")


def test_the_vlm_engine_and_the_cli_refuse_it_at_load(tampered, tmp_path: Path, capsys, count) -> None:
    from differad_edge.cli.main import main

    from differad_edge.engines import create_engine

    root = tampered(TAMPERED["sandbox: dunder attribute"])
    with pytest.raises(ModelLoadError, match="the Jinja sandbox refused it"):
        create_engine("vlm", model=root)
    image = np.full((64, 64, 3), 128, np.uint8)
    for name in ("ref.png", "t.png"):
        cv2.imwrite(str(tmp_path / name), image)
    capsys.readouterr()
    code = main(
        [
            "inspect",
            "-r",
            str(tmp_path / "ref.png"),
            "-t",
            str(tmp_path / "t.png"),
            "--engine",
            "vlm",
            "--model",
            str(root),
        ]
    )
    _out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(lines) == 1, err
    assert lines[0].startswith("differad: error: chat template "), err
    assert "chat_template.jinja" in lines[0]
    assert "Traceback" not in err
    count("models", 2)
