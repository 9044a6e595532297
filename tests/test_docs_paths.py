"""No doc names a file that does not exist: every relative link and every repository path in backticks
in README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md resolves in the tree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Where a path in the docs may be written relative to: the repository, the core package (``engines/vlm.py``),
#: the ROS workspace sources and the ROS package.
BASES = [ROOT, ROOT / "differad_edge", ROOT / "ros2_ws/src", ROOT / "ros2_ws/src/differad_edge"]
#: Files a doc may name that the tools write (outputs, a user's own files), not files of the repository.
WRITTEN = re.compile(r"^(out|runs|station|references|refs|store|bundle|bundles|model|models|frames|my_|work)[/_]")
PATH = re.compile(r"^\.?[\w.-]+(?:/[\w.*-]+)*/?$")
KNOWN_EXT = (".py", ".md", ".toml", ".ini", ".cfg", ".sh", ".xml", ".txt", ".yaml", ".yml", ".png", ".jinja")


def _tracked_top() -> set[str]:
    """Top-level names git tracks (folders and files): a backticked path starting with one is a repo path."""
    proc = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout:  # not a git checkout (an sdist, a copied tree): what is there
        return {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci"}
    return {line.split("/", 1)[0] for line in proc.stdout.splitlines() if line}


TOP = _tracked_top() - {"README.md"}


def _exists(token: str, doc: Path) -> bool:
    token = token.rstrip("/")
    for base in (doc.parent, *BASES):
        if any(ch in token for ch in "*?["):
            if any(base.glob(token)):
                return True
        elif (base / token).exists():
            return True
    return False


def _named_paths(doc: Path) -> list[str]:
    """Relative link targets, and backticked tokens that are repository paths (a tracked top-level name
    first, or a slash and a known file ending), and every backticked ``*.md``."""
    text = doc.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # command blocks: tests/test_readme.py runs those
    names = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"^(https?:|mailto:|#)", target):
            names.append(target.split("#", 1)[0])
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.split(":", 1)[0]  # tests/x.py::test_y, module.py:42
        if not PATH.match(token) or WRITTEN.match(token) or token.startswith(("~", "/", "-")):
            continue
        first = token.split("/", 1)[0]
        if ("/" in token and (first in TOP or token.endswith(KNOWN_EXT))) or token.endswith(".md"):
            names.append(token)
    return names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    missing = sorted({n for n in _named_paths(doc) if not _exists(n, doc)})
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_scan_finds_paths_and_flags_a_missing_one(tmp_path: Path) -> None:
    """The scan must see a path at all, or it would pass every doc."""
    doc = tmp_path / "x.md"
    doc.write_text("see `differad_edge/store.py`, `differad_edge/nope.py` and [the layout](layout.md)\n")
    names = _named_paths(doc)
    assert names == ["layout.md", "differad_edge/store.py", "differad_edge/nope.py"]
    assert [n for n in names if not _exists(n, ROOT / "docs" / "x.md")] == ["differad_edge/nope.py"]
