"""Every registered engine honours the engine protocol on the same inputs (anomalib's parity idea):
typed config, prepare -> handle, detect / detect_batch -> ``Detection`` with a verdict, JSON-ready
results, close twice. A new engine added to ``engines.ENGINES`` is picked up here automatically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from differad_edge.engines import ENGINES, Detection, Engine, EngineHandle, Reference, create_engine, engine_class
from differad_edge.outcome import Verdict


@pytest.fixture(scope="session")
def onnx_bundle(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from differad_edge.export import make_config, run_export

    cfg = make_config(
        model=tiny_model_dir,
        out=tmp_path_factory.mktemp("protocol") / "fp32",
        quant="fp32",
        verify_count=2,
        max_pixels=256 * 256,
    )
    return run_export(cfg, log=lambda _m: None).bundle


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
    if cls.config_type is not None:  # the typed options the CLI and the node map onto
        assert hasattr(cls.config_type, "__dataclass_fields__")
    engine = create_engine(name, **_options(name, request))
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
    engine.close()
    engine.close()  # safe twice
