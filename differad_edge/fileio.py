"""Atomic writes and checksums: the one place the SDK writes files that others may read concurrently."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # mkstemp makes 0600 files; keep a replaced file's mode, else the usual 0644 (a node may read as another user)
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    # The writer's pid in the name lets the store tell a dead writer's leftover from a live write.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8; a non-UTF-8 file name (a lone surrogate after ``os.fsdecode``) is written as ``\\udcXX``
    instead of failing the whole write (a validation report lost over one frame's name)."""
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def refuse_overwrite(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike], flag: str = "--out"
) -> None:
    """Refuse to write any of ``outputs`` over one of the command's own ``inputs`` (issue 13 item 4:
    ``inspect --out .`` replaced the target with its annotated picture). Compares resolved paths and,
    for existing files, device/inode (hard links, case-insensitive file systems)."""
    from .errors import ConfigError

    def key(p: str | os.PathLike) -> tuple[object, ...]:
        q = Path(p)
        try:
            st = q.stat()
            return ("inode", st.st_dev, st.st_ino)
        except OSError:
            return ("path", str(q.resolve()))

    taken = {key(p): Path(p) for p in inputs}
    for out in outputs:
        hit = taken.get(key(out))
        if hit is not None:
            raise ConfigError(
                f"{flag} would overwrite the input {hit} with {out}; choose another output folder or name"
            )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
