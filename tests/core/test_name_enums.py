"""Motion and variation-method names are StrEnums (issue 12): every config takes the plain name and
holds the member, an unknown name is one typed error naming the choices, and what is persisted or
written as YAML is the plain string."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from differad_edge.calibration.build import build_reference
from differad_edge.calibration.config import BuildConfig, make_config

from differad_edge.alignment import ALIGN_KEY, MOTIONS, AlignConfig, Motion, align, stored_motion
from differad_edge.engines.configuration_golden import GoldenConfig
from differad_edge.errors import ConfigError
from differad_edge.variation import VARIATION_METHODS, VariationMethod


def test_the_tuples_list_every_member_in_order_and_match_plain_names() -> None:
    assert MOTIONS == ("translation", "euclidean", "affine", "homography")
    assert VARIATION_METHODS == ("median_mad", "mean_std")
    assert "affine" in MOTIONS
    assert {"homography": 1}[Motion.HOMOGRAPHY] == 1
    assert json.dumps([Motion.AFFINE, VariationMethod.MEAN_STD]) == '["affine", "mean_std"]'


def test_align_config_coerces_a_plain_name_and_refuses_an_unknown_one() -> None:
    assert AlignConfig(motion="affine").motion is Motion.AFFINE  # type: ignore[arg-type]
    assert AlignConfig().motion is Motion.HOMOGRAPHY
    with pytest.raises(ConfigError, match=r"motion='spline' is not supported; use one of \['affine', 'euclidean'"):
        AlignConfig(motion="spline")  # type: ignore[arg-type]


def test_golden_config_coerces_the_method_and_dumps_the_plain_name() -> None:
    config = GoldenConfig(method="mean_std")  # type: ignore[arg-type]
    assert config.method is VariationMethod.MEAN_STD
    assert type(config.to_dict()["method"]) is str
    with pytest.raises(
        ConfigError, match="golden method='max' is not supported; expected one of: median_mad, mean_std"
    ):
        GoldenConfig(method="max")  # type: ignore[arg-type]


def test_build_config_takes_auto_or_a_motion_with_one_error_naming_every_choice() -> None:
    config = make_config(BuildConfig, {"motion": "affine", "method": "mean_std"})
    assert config.motion is Motion.AFFINE
    assert config.method is VariationMethod.MEAN_STD
    assert BuildConfig().motion == "auto"
    assert yaml.safe_dump(config.model_dump(mode="json"))  # plain strings: a YAML writer takes them
    with pytest.raises(ConfigError) as e:
        make_config(BuildConfig, {"motion": "spline"})
    assert str(e.value).count("motion") == 1, e.value
    assert "'auto', 'translation', 'euclidean', 'affine' or 'homography'" in str(e.value)


def test_stored_motion_reads_the_plain_name_calibration_wrote() -> None:
    assert stored_motion({ALIGN_KEY: {"motion": "translation"}}) is Motion.TRANSLATION
    assert stored_motion({ALIGN_KEY: {"motion": "spline"}}) is None
    assert stored_motion({}) is None


def test_persisted_names_are_plain_strings() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, (64, 64, 3), dtype=np.uint8)
    assert type(align(image, image).to_json()["motion"]) is str
    built = build_reference([image, image.copy(), image.copy()], 0, BuildConfig(motion="translation"))
    assert (built.metrics["motion"], built.metrics["method"]) == ("translation", "median_mad")
    assert type(built.metrics["motion"]) is str
    assert type(built.metrics["method"]) is str


def test_engine_defaults_listing_writes_the_plain_method_name() -> None:
    from differad_edge.cli.engines import as_yaml, describe

    assert "method: median_mad" in as_yaml("golden")
    assert any(line.strip().startswith("method = 'median_mad'") for line in describe("golden"))
