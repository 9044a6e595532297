"""Edge bundles are data with a manifest: every file listed with its sha256, checked on every load.

A bundle carries what inference needs besides weights (prompt, preprocessing, coordinate
convention) so a deployment cannot silently drift from the model it was verified with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import BundleError, DifferadError
from ..fileio import atomic_write_json, sha256_bytes, sha256_file
from ..prompts import PROMPT_FILE, PromptTemplate

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT_VERSION = 2  # 2: decoder with a boolean 4D attention mask and logits_rows (lookahead)
RUNTIMES = ("onnx", "torch")
#: The manifest's own checksum: the manifest steers inference (prompt ids, preprocessing, sizes), so an
#: edited manifest is as much a tampered bundle as an edited weight file.
INTEGRITY_KEY = "manifest_sha256"
REQUIRED_KEYS = (
    "runtime",
    "quantization",
    "files",
    "prompt",
    "model",
    "graphs",
    "size_policy",
    "preprocessing",
    "generation",
    "coordinates",
    "source",
    "exporter",
    "verification",
    "memory",
)


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
        raise BundleError(
            f"{root} has no {MANIFEST_NAME}: not a bundle, or an export that did not finish; re-export it"
        )
    if mpath.is_symlink() or mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath} is a link or over {MAX_MANIFEST_BYTES} bytes, not a bundle manifest; re-export it")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{mpath} is not readable JSON ({str(e).splitlines()[0][:200]}); re-export the bundle") from e
    except RecursionError as e:
        raise BundleError(f"{mpath} is nested too deeply to be a manifest; re-export the bundle") from e
    _check_header(manifest, mpath)
    _check_schema(manifest, mpath)
    if verify_checksums:
        if manifest.get(INTEGRITY_KEY) != manifest_digest(manifest):
            raise BundleError(
                f"{mpath} was altered after export (its {INTEGRITY_KEY} does not match its content); "
                "restore the original manifest or re-export the bundle"
            )
        for name, entry in manifest["files"].items():
            f = root / name
            parts = Path(name).parts
            if any((root / Path(*parts[: i + 1])).is_symlink() for i in range(len(parts))):
                raise BundleError(f"bundle file {name} is a symbolic link; a bundle holds its own files - re-export it")
            if not f.is_file():
                raise BundleError(f"bundle file {name} is missing from {root}; restore it or re-export the bundle")
            digest = sha256_file(f)
            if digest != entry.get("sha256"):
                raise BundleError(
                    f"bundle file {name} was altered: sha256 {digest[:16]}... but the manifest says "
                    f"{str(entry.get('sha256'))[:16]}...; restore the original file or re-export the bundle"
                )
    return Bundle(root, manifest)


MAX_MANIFEST_BYTES = 64 << 20


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _FileEntry(_Open):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[int, Field(ge=0)]


class _Quantization(_Open):
    mode: str


class _Prompt(_Open):
    template_id: str
    template: dict[str, Any]
    text: str
    segments: list[list[int]]


class _Generation(_Open):
    max_new_tokens: Annotated[int, Field(gt=0, le=1 << 16)]


class _SizePolicy(_Open):
    max_pixels: int
    min_pixels: int
    factor: int


PositiveInt = Annotated[int, Field(gt=0, le=1 << 20)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Preprocessing(_Open):
    model_config = ConfigDict(extra="forbid", strict=False)  # ints stay ints; floats may be written as ints

    patch_size: PositiveInt
    temporal_patch_size: PositiveInt
    merge_size: PositiveInt
    image_mean: tuple[Annotated[float, Field(allow_inf_nan=False)], ...] = Field(min_length=3, max_length=3)
    image_std: tuple[PositiveFloat, ...] = Field(min_length=3, max_length=3)
    rescale_factor: PositiveFloat
    num_grid_per_side: PositiveInt
    interpolation_align_corners: bool

    @field_validator("patch_size", "temporal_patch_size", "merge_size", "num_grid_per_side", mode="before")
    @classmethod
    def _strict_int(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be an integer, got {v!r:.40}")
        return v

    @field_validator("interpolation_align_corners", mode="before")
    @classmethod
    def _strict_bool(cls, v: Any) -> Any:
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r:.40}")
        return v


class _Manifest(_Open):
    """The types the runtimes rely on (unknown keys are kept: they are covered by the checksum)."""

    runtime: Literal["onnx", "torch"]
    quantization: _Quantization
    files: dict[str, _FileEntry]
    prompt: _Prompt
    model: dict[str, Any]
    graphs: dict[str, str]
    size_policy: _SizePolicy
    preprocessing: _Preprocessing
    generation: _Generation
    coordinates: dict[str, Any]
    source: dict[str, Any]
    exporter: dict[str, Any]
    verification: dict[str, Any]
    memory: dict[str, Any]


ONNX_GRAPHS = ("decoder", "vision", "embeddings", "tokenizer")
ONNX_MODEL_INTS = ("hidden_size", "num_layers", "num_deepstack", "num_kv_heads", "head_dim", "image_token_id")


def _check_schema(manifest: dict[str, Any], mpath: Path) -> None:
    """Wrong-typed fields are a ``BundleError`` at load, not a traceback at the first inference."""
    try:
        m = _Manifest.model_validate(manifest)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise BundleError(f"{mpath} is malformed at {where}: {err['msg']}; re-export the bundle") from e
    try:
        from ..vlm.size_policy import SizePolicy

        SizePolicy(**m.size_policy.model_dump())
        from .preprocess import ImageSpec

        ImageSpec.from_dict(manifest["preprocessing"])
    except (DifferadError, TypeError, ValueError, KeyError) as e:
        raise BundleError(f"{mpath}: size_policy/preprocessing are unusable ({e}); re-export the bundle") from e
    if "grammar" in manifest:  # the answer grammar both engines decode under (issue 17)
        from ..grammar import GrammarSpec

        try:
            GrammarSpec.from_dict(manifest["grammar"])
        except DifferadError as e:
            raise BundleError(f"{mpath}: the answer grammar is unusable ({e}); re-export the bundle") from e
    if m.runtime == "onnx":
        unlisted = sorted(g for g in m.graphs.values() if g not in m.files)
        if unlisted:
            raise BundleError(f"{mpath} names graphs {unlisted} that its files do not list; re-export the bundle")
        missing = [g for g in ONNX_GRAPHS if g not in m.graphs]
        bad = [k for k in ONNX_MODEL_INTS if isinstance(m.model.get(k), bool) or not isinstance(m.model.get(k), int)]
        eos = m.model.get("eos_token_ids")
        if missing or bad or not isinstance(eos, list) or not all(isinstance(t, int) for t in eos):
            raise BundleError(
                f"{mpath}: an onnx bundle needs graphs {', '.join(ONNX_GRAPHS)} and integer model fields "
                f"{', '.join(ONNX_MODEL_INTS)}, eos_token_ids (missing graphs: {missing}, bad fields: {bad}); "
                "re-export the bundle"
            )
    for name in m.files:
        if name.endswith(".json") and (mpath.parent / name).is_file() and not (mpath.parent / name).is_symlink():
            _check_json_file(mpath.parent / name)


def _check_json_file(path: Path) -> None:
    """A tokenizer/config file of the bundle must at least be a JSON object (garbage fails here)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0][:200]
        raise BundleError(f"bundle file {path.name} is not valid JSON ({why}); re-export the bundle") from e
    if not isinstance(data, dict):
        raise BundleError(f"bundle file {path.name} must hold a JSON object; re-export the bundle")
    if path.name == "tokenizer.json":
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - comes with the onnx/vlm extras that run bundles
            return
        try:
            Tokenizer.from_str(json.dumps(data))
        except Exception as e:  # the tokenizers library raises its own exception type
            why = " ".join(str(e).split())[:200]
            raise BundleError(f"bundle file {path.name} is not a tokenizer ({why}); re-export the bundle") from e
    if path.name == PROMPT_FILE:
        try:
            template = PromptTemplate.from_dict(data)
            if not all(isinstance(i, str) for i in template.instructions):
                raise TypeError("instructions must be strings")
        except (DifferadError, TypeError, ValueError) as e:
            raise BundleError(
                f"bundle prompt file {path.name} is not a valid prompt ({e}); re-export the bundle"
            ) from e


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
