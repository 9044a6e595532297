"""One version: every place that states the release agrees with the one source,
``differad_edge/__init__.py`` (ament needs a literal in each package.xml, so those are checked, not read)."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import differad_edge

ROOT = Path(__file__).resolve().parents[1]
SOURCE = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "differad_edge/__init__.py").read_text(encoding="utf-8"), re.M)
VERSION = SOURCE[1] if SOURCE else ""
SEMVER = r"\d+\.\d+\.\d+"
SETUPS = [ROOT / "setup.py", *sorted((ROOT / "ros2_ws/src").glob("*/setup.py"))]
PACKAGE_XMLS = sorted((ROOT / "ros2_ws/src").glob("differad_*/package.xml"))  # vision_msgs is upstream's
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _releases() -> list[str]:
    """CHANGELOG release headings, newest first (``## 0.2.0 — trust``)."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return re.findall(rf"^## v?({SEMVER})\b", text, flags=re.M)


def test_the_source_is_a_version_and_the_package_reports_it() -> None:
    assert re.fullmatch(SEMVER, VERSION), SOURCE
    assert differad_edge.__version__ == VERSION


def test_the_changelog_top_release_is_the_source() -> None:
    releases = _releases()
    assert releases, "CHANGELOG.md has no '## X.Y.Z' release heading"
    assert releases[0] == VERSION, releases


@pytest.mark.parametrize("path", PACKAGE_XMLS, ids=lambda p: p.parent.name)
def test_each_ros_package_xml_states_the_source(path: Path) -> None:
    assert ET.parse(path).getroot().findtext("version") == VERSION, path


@pytest.mark.parametrize("path", SETUPS, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_setup_py_reports_the_source_and_hard_codes_none(path: Path) -> None:
    """What setuptools would install (``setup.py --version``), and no literal that could drift."""
    literal = re.findall(rf"""version\s*=\s*["']({SEMVER})""", path.read_text(encoding="utf-8"))
    assert not literal, f"{path}: read the version from its source instead of {literal}"
    proc = subprocess.run(
        [sys.executable, path.name, "--version"], cwd=path.parent, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == VERSION, proc.stdout


def test_the_ros_edge_reports_the_source() -> None:
    text = (ROOT / "ros2_ws/src/differad_edge/differad_edge_ros/__init__.py").read_text(encoding="utf-8")
    assert not re.search(rf"""__version__\s*=\s*["']{SEMVER}""", text), "a second version literal"
    assert "from differad_edge import __version__" in text


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_released_versions_of_this_project(path: Path) -> None:
    """A doc may speak of an earlier release (``0.1.0 node``) but never of one the CHANGELOG does not have."""
    text = path.read_text(encoding="utf-8")
    named = re.findall(
        rf"(?i)(?:differad[-_ ]edge(?:[-_]ros)?|version|release|SDK)\s+v?({SEMVER})\b"
        rf"|\b({SEMVER})\s+(?:node|release|SDK)\b",
        text,
    )
    unknown = sorted({a or b for a, b in named} - set(_releases()))
    assert not unknown, f"{path.name} names versions not in CHANGELOG.md: {unknown}"
