"""fileio: atomic writes (readers never see half a file) and sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from differad_edge.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file


def test_writes_create_parents_and_replace(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two ü")
    assert p.read_text(encoding="utf-8") == "two ü"
    assert [f.name for f in p.parent.iterdir()] == ["f.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "keep.bin"
    atomic_write_bytes(p, b"original")
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # type: ignore[arg-type]  # fails inside the write
    assert p.read_bytes() == b"original"
    assert [f.name for f in tmp_path.iterdir()] == ["keep.bin"]


def test_json_is_sorted_and_newline_terminated(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    atomic_write_json(p, {"b": 1, "a": [1, 2]})
    text = p.read_text()
    assert text.endswith("\n")
    assert text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [1, 2], "b": 1}


def test_sha256_known_vector_and_file_chunks(tmp_path: Path) -> None:
    assert sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = bytes(range(256)) * 1000
    p = tmp_path / "d.bin"
    p.write_bytes(data)
    assert sha256_file(p, chunk=1000) == sha256_file(p) == hashlib.sha256(data).hexdigest() == sha256_bytes(data)


def test_written_files_are_readable_by_others_and_keep_their_mode(tmp_path: Path) -> None:
    """A reference written by the calibration user must be readable by the node's user (mkstemp gives 0600)."""
    fresh = tmp_path / "fresh.json"
    atomic_write_text(fresh, "{}")
    assert fresh.stat().st_mode & 0o777 == 0o644
    private = tmp_path / "private.txt"
    private.write_text("old")
    private.chmod(0o600)
    atomic_write_text(private, "new")
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text() == "new"


def test_refuse_overwrite_catches_an_output_that_is_an_input(tmp_path) -> None:
    """Issue 13 item 4: ``inspect -t t1.png --out .`` replaced t1.png; the helper the CLIs call refuses it."""
    import os

    import pytest

    from differad_edge.errors import ConfigError
    from differad_edge.fileio import refuse_overwrite

    t1 = tmp_path / "t1.png"
    t1.write_bytes(b"x")
    os.link(t1, tmp_path / "hard.png")
    with pytest.raises(ConfigError, match="would overwrite the input"):
        refuse_overwrite([tmp_path / "." / "t1.png"], [t1])
    with pytest.raises(ConfigError, match="hard.png|t1.png"):
        refuse_overwrite([tmp_path / "hard.png"], [t1])  # the same file under another name
    refuse_overwrite([tmp_path / "t1_annotated.png", tmp_path / "new.png"], [t1])  # other names are fine
