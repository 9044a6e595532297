"""Every registered engine honours the engine protocol on the same inputs (anomalib's parity idea):
typed config, prepare -> handle, detect / detect_batch -> ``Detection`` with a verdict, JSON-ready
results, close twice. A new engine added to ``engines.ENGINES`` is picked up here automatically."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from differad_edge.engines import ENGINES, Detection, Engine, EngineHandle, Reference, create_engine, engine_class
from differad_edge.errors import EngineError
from differad_edge.outcome import Verdict


def _options(name: str, request: pytest.FixtureRequest) -> dict:
    if name == "vlm":
        return {"model": request.getfixturevalue("tiny_model_dir"), "max_new_tokens": 8}
    if name == "onnx":
        return {"model": request.getfixturevalue("onnx_bundle"), "max_new_tokens": 8}
    return {}


def _images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = rng.integers(40, 200, (64, 64, 3), dtype=np.uint8)
    bad = ref.copy()
    bad[20:34, 24:40] = 255
    return ref, bad


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_registered_engine_honours_the_protocol(name: str, request: pytest.FixtureRequest) -> None:
    cls = engine_class(name)
    assert issubclass(cls, Engine)
    assert cls.name == name
    assert cls.config_type is not None  # the typed options the CLI and the node map onto
    assert dataclasses.is_dataclass(cls.config_type)
    defaults = cls.config_type()  # every option has a default
    first = dataclasses.fields(defaults)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):  # immutable: replaced whole, never edited
        setattr(defaults, first, getattr(defaults, first))
    engine = create_engine(name, **_options(name, request))
    assert isinstance(engine.config, cls.config_type)  # keywords became the typed config
    ref, bad = _images()
    handle = engine.prepare(Reference(ref, product_id="p", version="v1"))
    assert isinstance(handle, EngineHandle)
    single = [engine.detect(handle, t) for t in (ref, bad)]
    batch = engine.detect_batch(handle, [ref, bad])
    for one, many in zip(single, batch, strict=True):
        assert isinstance(one, Detection)
        assert one.engine == name
        assert isinstance(one.verdict, Verdict)
        assert one.verdict is many.verdict
        assert [d.box for d in one.defects] == [d.box for d in many.defects]
        if one.verdict is Verdict.NOT_INSPECTED:  # a random model may answer garbage: never OK then
            assert one.not_inspected is not None
            assert one.message
            assert not one.defects
        for d in one.defects:
            assert 0 <= d.box.x1 < d.box.x2 <= 64
            assert 0 <= d.box.y1 < d.box.y2 <= 64
        out = one.to_json()
        assert {"verdict", "reason", "defects", "box", "score", "valid", "engine", "timings_ms"} <= set(out)
        json.dumps(out)
    json.dumps(engine.describe())
    foreign = EngineHandle(handle.reference)  # prepared by "another engine": its fields are not ours
    with pytest.raises(EngineError, match=f"the {name} engine got a EngineHandle from another engine"):
        engine.detect(foreign, ref)
    engine.close()
    engine.close()  # safe twice


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_config_round_trips_through_the_cli_options(name: str, tmp_path: Path) -> None:
    """Each field of an engine's config, written as ``--engine-option KEY=VALUE`` (or one
    ``--engine-config`` YAML file), parses back to the same config: the defaults, and the config with
    every switch flipped (so an option the parser loses or mistypes fails here)."""
    import yaml
    from differad_edge.cli.engine_args import add_engine_arguments, config_options

    config_type = engine_class(name).config_type
    assert config_type is not None
    defaults = config_type()
    flips = {f.name: not getattr(defaults, f.name) for f in dataclasses.fields(defaults) if f.type in ("bool", bool)}
    assert flips, f"{name} config has no switch to flip"
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    for config in (defaults, dataclasses.replace(defaults, **flips)):
        plain = config.to_dict()
        pairs = [a for k, v in plain.items() for a in ("--engine-option", f"{k}={json.dumps(v)}")]
        parsed = config_type(**config_options(parser.parse_args(pairs)))
        assert parsed.to_dict() == plain
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(plain))
        from_file = config_type(**config_options(parser.parse_args(["--engine-config", str(path)])))
        assert from_file.to_dict() == plain
