"""Edge bundles are data with a manifest: every file listed with its sha256, checked on every load.

A bundle carries what inference needs besides weights (prompt, preprocessing, coordinate
convention) so a deployment cannot silently drift from the model it was verified with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BundleError
from ..fileio import atomic_write_json, sha256_bytes, sha256_file

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT_VERSION = 1
RUNTIMES = ("onnx", "torch")
#: The manifest's own checksum: the manifest steers inference (prompt ids, preprocessing, sizes), so an
#: edited manifest is as much a tampered bundle as an edited weight file.
INTEGRITY_KEY = "manifest_sha256"
REQUIRED_KEYS = ("runtime", "quantization", "files", "prompt", "model", "graphs", "size_policy", "preprocessing",
                 "generation", "coordinates", "source", "exporter", "verification", "memory")


@dataclass(frozen=True)
class Bundle:
    """A loaded, checksum-verified bundle: its folder and manifest."""

    root: Path
    manifest: dict[str, Any]

    @property
    def runtime(self) -> str:
        return str(self.manifest["runtime"])

    @property
    def quantization(self) -> str:
        return str(self.manifest["quantization"]["mode"])

    def path(self, name: str) -> Path:
        """Path of a file the manifest lists (never one it does not)."""
        if name not in self.manifest["files"]:
            raise BundleError(f"bundle {self.root} has no file {name!r} in its manifest; re-export the bundle")
        return self.root / name


def file_entries(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{relative name: {sha256, bytes}}`` for the files of a bundle being written."""
    return {n: {"sha256": sha256_file(root / n), "bytes": (root / n).stat().st_size} for n in sorted(names)}


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, its own ``manifest_sha256`` left out.

    >>> manifest_digest({"a": 1, INTEGRITY_KEY: "x"}) == manifest_digest({"a": 1})
    True
    """
    body = json.loads(json.dumps({k: v for k, v in manifest.items() if k != INTEGRITY_KEY}))  # as read back
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest last (atomically): a bundle without one is visibly incomplete.

    Adds ``manifest_sha256`` to ``manifest`` (in place) so that loading detects an edited manifest.
    """
    path = root / MANIFEST_NAME
    manifest[INTEGRITY_KEY] = manifest_digest(manifest)
    atomic_write_json(path, manifest)
    return path


def bundle_bytes(manifest: dict[str, Any]) -> int:
    """Total size of the listed files."""
    return sum(int(f["bytes"]) for f in manifest["files"].values())


def load_bundle(path: str | os.PathLike, verify_checksums: bool = True) -> Bundle:
    """Read a bundle's manifest and check every listed file exists and matches its sha256.

    Raises ``BundleError`` naming the first problem (missing manifest, unknown format version,
    missing or altered file) and the fix (re-export, or restore the file).
    """
    root = Path(path)
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"bundle folder {root} does not exist; pass the folder written by differad-export --out")
    if not mpath.is_file():
        raise BundleError(f"{root} has no {MANIFEST_NAME}: not a bundle, or an export that did not finish; re-export it")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath} is not readable JSON ({e}); re-export the bundle") from e
    _check_header(manifest, mpath)
    if verify_checksums:
        if manifest.get(INTEGRITY_KEY) != manifest_digest(manifest):
            raise BundleError(f"{mpath} was altered after export (its {INTEGRITY_KEY} does not match its content); "
                              "restore the original manifest or re-export the bundle")
        for name, entry in manifest["files"].items():
            f = root / name
            if not f.is_file():
                raise BundleError(f"bundle file {name} is missing from {root}; restore it or re-export the bundle")
            digest = sha256_file(f)
            if digest != entry.get("sha256"):
                raise BundleError(
                    f"bundle file {name} was altered: sha256 {digest[:16]}... but the manifest says "
                    f"{str(entry.get('sha256'))[:16]}...; restore the original file or re-export the bundle"
                )
    return Bundle(root, manifest)


def _check_header(manifest: Any, mpath: Path) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath} must hold a JSON object; re-export the bundle")
    version = manifest.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{mpath} has format_version {version!r}, this SDK reads {BUNDLE_FORMAT_VERSION}; "
            "re-export the bundle with this SDK's differad-export"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{mpath} lacks {', '.join(missing)}; re-export the bundle")
    if manifest["runtime"] not in RUNTIMES:
        raise BundleError(f"{mpath} names runtime {manifest['runtime']!r}; expected one of {', '.join(RUNTIMES)}")
    if not isinstance(manifest["files"], dict) or not manifest["files"]:
        raise BundleError(f"{mpath} lists no files; re-export the bundle")
    for name in manifest["files"]:
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise BundleError(f"{mpath} lists file {name!r} outside the bundle; refusing to read it")
