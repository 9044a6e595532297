"""``differad engines``: the options it lists are the typed configs' fields, and its YAML goes back in."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml
from differad_edge.cli.engines import as_yaml, describe

from differad_edge.engines import ENGINES, engine_class


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_field_of_the_config_is_listed_with_its_help(name):
    config = engine_class(name).config_type
    lines = describe(name)
    assert config.__name__ in lines[0]
    listed = [line.split("=")[0].strip() for line in lines[1:]]
    assert listed == [f.name for f in dataclasses.fields(config)]
    for f, line in zip(dataclasses.fields(config), lines[1:], strict=True):
        assert f.metadata["help"] in line


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_yaml_file_is_the_defaults_and_builds_the_config(name):
    config = engine_class(name).config_type
    data = yaml.safe_load(as_yaml(name))
    assert data
    built, defaults = config(**data), config()  # every value printed is accepted as given ...
    for f in dataclasses.fields(config):
        assert getattr(built, f.name) == getattr(defaults, f.name), f.name  # ... and is the default


def test_engines_command_runs_and_exits_zero():
    done = subprocess.run(
        [sys.executable, "-m", "differad_edge.cli.main", "engines", "golden"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "min_area = 25" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "differad_edge.cli.main", "engines", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
