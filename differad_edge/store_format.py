"""The reference store's file formats and its guarded file access (issue 13).

Why a module of its own: ``store.py`` holds the rules about versions; this holds what a byte on
disk may be. Every file the store reads goes through :func:`read_store_file` (regular files inside
the store only: no symlink, FIFO or device, no path outside it, bounded size) and every JSON file
through a pydantic model, so a damaged or hand-edited store is one ``ReferenceError`` naming the
file and the field, never a traceback or a hang.

Manifests and the active pointer carry ``sha256``, a checksum over their own canonical JSON:
an edit (thresholds raised to 1e9, ``"status": "validated"`` typed in) fails the load. Format 1
(the unversioned/unsealed layout of earlier releases) still loads until the product's first write
with this release, which seals every manifest (format 2) and marks the pointer format 2; from
then on an unsealed manifest in that product is refused as a downgrade.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ReferenceError
from .fileio import sha256_bytes

FORMAT_VERSION = 2
LEGACY_FORMAT: Literal[1] = 1
#: Bounds on what the store reads (a manifest with a validation report is a few kB).
MAX_JSON_BYTES = 16 << 20
MAX_HISTORY_BYTES = 64 << 20
MAX_BLOB_BYTES = 1 << 30
#: A temp entry older than this is stale even if its writer's pid looks alive (pid reuse).
STALE_AFTER_S = 3600.0
#: ...and one whose writer's pid is gone is stale once this old: a writer in another pid namespace
#: (a container sharing the store) looks dead from here, and its temp folder lives a few seconds.
DEAD_WRITER_GRACE_S = 30.0

FILE_NAME = re.compile(r"^(reference\.png|care_mask\.png|mean\.npy|spread\.npy|extra_\d{3,6}\.png)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
VERSION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: Temp names the store owns: ``.tmp-<pid>-<hex>`` version folders (``.tmp-<hex>`` before this
#: release) and ``.<name>.<pid>.<random>.tmp`` files of ``fileio.atomic_write_bytes``.
TMP_DIR = re.compile(r"^\.tmp-(?:(\d+)-)?[0-9a-f]{32}$")
TMP_FILE = re.compile(r"^\..+?\.(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp$")

VersionId = Annotated[str, Field(pattern=VERSION_ID)]


class _Model(BaseModel):
    # Unknown keys are kept (and covered by the checksum): newer writers may add fields.
    model_config = ConfigDict(extra="allow", strict=True)


class Validation(_Model):
    passed: bool
    time: str = ""
    report: dict[str, Any] = Field(default_factory=dict)

    @field_validator("report")
    @classmethod
    def _tuned_thresholds_are_numbers(cls, report: dict[str, Any]) -> dict[str, Any]:
        golden = report.get("golden")
        if golden is None:
            return report
        if not isinstance(golden, dict):
            raise ValueError(f"report.golden must be an object of thresholds, got {type(golden).__name__}")
        for k, v in golden.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"tuned threshold golden.{k} must be a finite number, got {v!r}")
        return report


class StatusChange(_Model):
    status: Literal["candidate", "validated", "rejected"]
    time: str = ""


class Manifest(_Model):
    """``versions/<v>/manifest.json``."""

    format: Literal[1, 2]
    product_id: str | None = None
    version: VersionId | None = None
    created: str = ""
    size: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = (0, 0)
    files: dict[str, str]
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: Literal["candidate", "validated", "rejected"] = "candidate"
    validation: Validation | None = None
    status_history: list[StatusChange] = Field(default_factory=list)
    sha256: str | None = None

    @field_validator("size", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("files")
    @classmethod
    def _known_names_and_checksums(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            if not FILE_NAME.fullmatch(name):
                raise ValueError(f"file name {name!r} is not one the store writes (no paths, no '..')")
            if not SHA256.fullmatch(digest):
                raise ValueError(f"files[{name!r}] must be a lower-case sha256 hex digest, got {digest!r}")
        if "reference.png" not in files:
            raise ValueError("files lacks reference.png")
        return files


class Pointer(_Model):
    """``<product>/active.json``: the active version, the ones before it, and the event that set it
    (the commit record: see ``ReferenceStore._commit_pointer``)."""

    format: Literal[1, 2] = LEGACY_FORMAT
    version: VersionId | None = None
    previous: list[VersionId] = Field(default_factory=list)
    time: str = ""
    event: dict[str, Any] | None = None
    sha256: str | None = None


class Event(_Model):
    """One line of ``<product>/history.jsonl``."""

    event: str
    time: str = ""
    version: str | None = None
    id: str | None = None


def _strip_checksum(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "sha256"}


def content_checksum(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``data`` without its own ``sha256`` key."""
    text = json.dumps(_strip_checksum(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return sha256_bytes(text.encode("ascii"))


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as format 2 with its checksum (what every writer stores)."""
    out = {**_strip_checksum(data), "format": FORMAT_VERSION}
    out["sha256"] = content_checksum(out)
    return out


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def parse_json(data: bytes, path: Path, what: str) -> Any:
    """Bytes of a store JSON file -> Python value; any damage is a ``ReferenceError`` naming ``path``."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0][:200]
        raise ReferenceError(f"unreadable {what} {path}: {reason}; restore it from a backup or remove it") from e


def validate_model(model: type[_Model], value: Any, path: Path, what: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise ReferenceError(f"{what} {path} is malformed: {_one_line(e)}; restore it or remove it") from e
    except RecursionError as e:
        raise ReferenceError(f"{what} {path} is nested too deeply; restore it or remove it") from e


def verify_checksum(data: dict[str, Any], path: Path, what: str) -> None:
    expected = data.get("sha256")
    if expected != content_checksum(data):
        raise ReferenceError(
            f"{what} {path} was edited after it was written (its sha256 does not match its content); "
            "restore it, or roll back / re-add the version"
        )


# -- guarded file access -----------------------------------------------------------------------------
def check_no_links(root: Path, path: Path) -> None:
    """Refuse ``path`` unless it lies under ``root`` and no component below ``root`` is a symlink or
    a special file (a planted link would send reads or writes outside the store).

    Plain string operations, not pathlib: this runs on every read (``active_version`` per frame)."""
    root_s, path_s = os.fspath(root), os.fspath(path)
    prefix = root_s if root_s.endswith(os.sep) else root_s + os.sep
    if path_s == root_s or path_s == root_s.rstrip(os.sep):
        return
    if not path_s.startswith(prefix):
        raise ReferenceError(f"{path} lies outside the reference store {root}")
    parts = path_s[len(prefix) :].split(os.sep)
    if any(part in ("..", ".", "") for part in parts):
        raise ReferenceError(f"{path} is not a plain path inside the reference store {root}")
    current = prefix.rstrip(os.sep) if prefix != os.sep else ""
    last = len(parts) - 1
    for i, part in enumerate(parts):
        current = current + os.sep + part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return  # the rest does not exist yet (a write will create it)
        except OSError as e:
            raise ReferenceError(f"cannot inspect {current}: {e.strerror}") from e
        if stat.S_ISLNK(mode):
            raise ReferenceError(
                f"{current} is a symbolic link inside the reference store; the store holds real folders "
                "and files only - remove the link"
            )
        if i < last and not stat.S_ISDIR(mode):
            raise ReferenceError(f"{current} should be a folder of the reference store but is not")
        if i == last and not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise ReferenceError(f"{current} is a special file (FIFO, socket or device), not a store file; remove it")


def read_store_file(root: Path, path: Path, limit: int, what: str) -> bytes | None:
    """Bytes of a regular file inside the store, or None when it does not exist.

    Opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` after opening, so neither a
    symlink nor a FIFO swapped in between the check and the open is followed or blocks.
    """
    check_no_links(root, path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ReferenceError(f"cannot open {what} {path}: {e.strerror}; check it is a file the store wrote") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReferenceError(f"{what} {path} is not a regular file; remove it")
        if st.st_size > limit:
            raise ReferenceError(
                f"{what} {path} is {st.st_size} bytes, over the limit of {limit}; it is not a store file"
            )
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:
                raise ReferenceError(f"{what} {path} grew over the limit of {limit} bytes while being read")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise ReferenceError(f"cannot read {what} {path}: {e.strerror}") from e
    finally:
        os.close(fd)


# -- stale temp entries ---------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _is_stale(entry: os.DirEntry, pid: str | None, now: float) -> bool:
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return pid is not None and age > DEAD_WRITER_GRACE_S and not _pid_alive(int(pid))


def clean_stale_temps(folders: list[Path]) -> list[str]:
    """Remove temp entries of writers that died (``kill -9``, power loss); returns their names.

    Only names the store itself creates are touched, and only when their writer's process is gone
    or they are older than ``STALE_AFTER_S``: a concurrent writer's temp file stays.
    """
    removed: list[str] = []
    now = time.time()
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            m_dir, m_file = TMP_DIR.fullmatch(entry.name), TMP_FILE.fullmatch(entry.name)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if m_dir and is_dir and _is_stale(entry, m_dir.group(1), now):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
            elif m_file and not is_dir and _is_stale(entry, m_file.group(1), now):
                try:
                    os.unlink(entry.path)
                    removed.append(entry.name)
                except OSError:
                    pass
    return removed
