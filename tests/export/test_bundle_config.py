"""The bundle manifest meets ``OnnxConfig``: every manifest field that sets how the ``onnx`` engine runs
is the default of one ``OnnxConfig`` field (the option's ``None``/on means "the bundle's"), or part of
the model fixed at export (size policy, prompt: not options); the rest describes the bundle itself. A
new manifest field must be classified here, so the engine's options never silently drift from it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from differad_edge.engines import create_engine
from differad_edge.engines.configuration_onnx import OnnxConfig
from differad_edge.onnxrt.bundle import INTEGRITY_KEY, REQUIRED_KEYS

#: manifest field -> the OnnxConfig field whose default it is.
OPTION_DEFAULTS = {
    "generation": "max_new_tokens",  # generation.max_new_tokens: OnnxConfig.max_new_tokens=None
    "grammar": "grammar",  # the answer grammar OnnxConfig.grammar switches on (default on)
    "tensorrt": "vision_plan",  # the TensorRT vision plan OnnxConfig.vision_plan uses when None
}
#: Engine settings fixed at export: the graphs and the verification were made for them.
FIXED_AT_EXPORT = {"size_policy", "prompt"}
#: What the bundle is, not how it runs.
DESCRIPTION = {
    "format_version",
    INTEGRITY_KEY,
    "runtime",
    "quantization",
    "files",
    "model",
    "graphs",
    "preprocessing",
    "coordinates",
    "source",
    "exporter",
    "verification",
    "memory",
}


def test_the_classification_covers_the_schema() -> None:
    assert set(REQUIRED_KEYS) <= set(OPTION_DEFAULTS) | FIXED_AT_EXPORT | DESCRIPTION
    options = {f.name for f in dataclasses.fields(OnnxConfig)}
    assert set(OPTION_DEFAULTS.values()) <= options
    assert not (FIXED_AT_EXPORT | {"size_policy", "template_id", "max_pixels"}) & options  # not overridable


@pytest.mark.slow
def test_every_engine_relevant_manifest_field_maps_onto_an_onnx_config_field(fp32_bundle) -> None:
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    unclassified = set(manifest) - set(OPTION_DEFAULTS) - FIXED_AT_EXPORT - DESCRIPTION
    assert not unclassified, f"classify the manifest fields {sorted(unclassified)} (an OnnxConfig default or not)"
    defaults = create_engine("onnx", model=fp32_bundle)
    assert defaults.config == OnnxConfig()
    assert defaults.max_new_tokens == manifest["generation"]["max_new_tokens"]
    assert defaults.runner.grammar_on
    assert defaults.runner.grammar_source == "manifest"
    assert defaults.size_policy.max_pixels == manifest["size_policy"]["max_pixels"]
    overridden = create_engine("onnx", model=fp32_bundle, max_new_tokens=7, grammar=False, vision_plan=False)
    assert overridden.max_new_tokens == 7
    assert not overridden.runner.grammar_on
    assert overridden.runner.vision_backend != "tensorrt-plan"


def test_session_options_are_fixed_once_the_engine_runs(fp32_bundle) -> None:
    from differad_edge.errors import ConfigError

    engine = create_engine("onnx", model=fp32_bundle)
    engine.config = dataclasses.replace(engine.config, max_new_tokens=9)  # read per call: takes effect
    assert engine.max_new_tokens == 9
    with pytest.raises(ConfigError, match=r"threads, lookahead are fixed when the ONNX Runtime sessions load"):
        engine.config = dataclasses.replace(engine.config, threads=1, lookahead=True)
    assert engine.config.threads is None  # the refused config left the engine as it was
    assert engine.max_new_tokens == 9
