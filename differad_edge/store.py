"""Directory-backed, versioned store of reference images per product.

Layout (everything is plain data: PNG, ``.npy`` without pickle, JSON)::

    ROOT/<product>/active.json           {"version": ..., "previous": [...]}  (the active pointer)
    ROOT/<product>/history.jsonl         one event per line (add, validation, promote, rollback)
    ROOT/<product>/versions/<version>/   reference.png, extra_NNN.png, care_mask.png,
                                         mean.npy, spread.npy, manifest.json (sha256 of every file)

Why this shape: a version directory is written under a hidden temporary name and renamed into
place only when complete, and the pointer and manifests are replaced atomically, so a crash at
any point leaves the store loadable — readers see the old state or the new one, never half of
one. Versions are immutable data; promote/rollback only move the pointer, so a rollback serves
byte-identical files. Writers of one product (other processes included) take ``<product>/.lock``
in turn, so concurrent calibrations do not lose each other's history events or pointer changes.

Under abuse (issue 13): every file is read through ``store_format`` (regular files inside the store
only, bounded, pydantic-validated, manifests and pointer checksummed), writers refuse symlinked
paths and clean temp entries of writers that died, and a pointer change and its history event are
committed by one atomic rename (the pointer file carries the event; see ``_commit_pointer``).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import stat
import uuid

try:
    import fcntl
except ImportError:  # not POSIX: writers are not serialized across processes
    fcntl = None  # type: ignore[assignment]
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from .errors import ConfigError, ImageError, ReferenceError
from .fileio import atomic_write_bytes, atomic_write_json, sha256_bytes
from .images import decode_gray, decode_image, encode_image, image_size, to_rgb8
from .reference import TUNED_KEY, Reference
from .store_format import (
    LEGACY_FORMAT,
    MAX_BLOB_BYTES,
    MAX_HISTORY_BYTES,
    MAX_JSON_BYTES,
    Event,
    Manifest,
    Pointer,
    check_no_links,
    clean_stale_temps,
    parse_json,
    read_store_file,
    seal,
    validate_model,
    verify_checksum,
)

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT_VERSION = 2  # 1: unsealed manifests of earlier releases (still read; sealed on the next write)
Status = Literal["candidate", "validated", "rejected"]

IMAGE_FILE = "reference.png"
MASK_FILE = "care_mask.png"
MEAN_FILE = "mean.npy"
SPREAD_FILE = "spread.npy"
MANIFEST_FILE = "manifest.json"
ACTIVE_FILE = "active.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
T = TypeVar("T")


def validate_id(value: str, what: str = "id") -> str:
    """Product and version ids become directory names: refuse anything that could escape ``root``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ReferenceError(
            f"invalid {what} {value!r}: expected 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/', no '..'); rename it"
        )
    return value


@dataclass
class VersionInfo:
    """What the manifest of one version says (status is the validation state; ``active`` is the pointer)."""

    product_id: str
    version: str
    status: Status
    active: bool
    created: str
    files: dict[str, str]
    size: tuple[int, int]
    metadata: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    status_history: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def _product_lock(pdir: Path) -> Iterator[None]:
    """Exclusive lock of one product's writers (other processes included: two calibrations of the
    same product at once). Each write is atomic on its own; the lock keeps read-modify-write steps
    (the history log, the pointer's ``previous`` list, a manifest's status) from losing each
    other's changes. Readers never lock."""
    if os.path.islink(pdir):
        raise ReferenceError(f"{pdir} is a symbolic link inside the reference store; remove the link")
    if not pdir.is_dir():  # an unknown product: nothing to protect, and nothing is created for it
        yield
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(pdir / LOCK_FILE, flags, 0o644)
    except OSError as e:
        raise ReferenceError(f"cannot open the lock {pdir / LOCK_FILE}: {e.strerror}; it must be a plain file") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ReferenceError(f"the lock {pdir / LOCK_FILE} is not a regular file; remove it")
    with os.fdopen(fd, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """Run a ``ReferenceStore`` method (first argument: the product id) under that product's lock."""

    @functools.wraps(method)
    def wrapper(self: ReferenceStore, product_id: str, *args: Any, **kwargs: Any) -> T:
        with _product_lock(self._product_dir(product_id)):
            self._housekeeping(product_id)
            return method(self, product_id, *args, **kwargs)

    return wrapper


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


class ReferenceStore:
    """Versioned references under ``root`` (created on the first write, not at construction)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        #: Sealed pointers already checked, by their bytes: the per-frame ``active_version`` then costs
        #: one guarded read and a comparison (the bytes are still read and compared every time).
        self._pointer_cache: dict[Path, tuple[bytes, dict[str, Any]]] = {}

    # -- paths --------------------------------------------------------------------------------
    def _product_dir(self, product_id: str) -> Path:
        return self.root / validate_id(product_id, "product id")

    def _version_dir(self, product_id: str, version: str) -> Path:
        return self._product_dir(product_id) / "versions" / validate_id(version, "version")

    # -- reading ------------------------------------------------------------------------------
    def _read(self, path: Path, limit: int, what: str) -> bytes | None:
        return read_store_file(self.root, path, limit, what)

    def _entries(self, folder: Path) -> list[os.DirEntry]:
        """Entries of a store folder; a symlink among the id-named ones is refused, not followed."""
        check_no_links(self.root, folder)
        try:
            entries = [e for e in os.scandir(folder) if ID_PATTERN.fullmatch(e.name)]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise ReferenceError(f"cannot list {folder}: {e.strerror}") from e
        for entry in entries:
            if entry.is_symlink():
                raise ReferenceError(
                    f"{entry.path} is a symbolic link inside the reference store; the store holds real folders "
                    "and files only - remove the link"
                )
        return entries

    def products(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            e.name
            for e in self._entries(self.root)
            if e.is_dir(follow_symlinks=False) and (Path(e.path) / "versions").is_dir()
        )

    def _version_names(self, product_id: str) -> list[str]:
        vdir = self._product_dir(product_id) / "versions"
        # Hidden temporary directories (crashed or in-progress writes) do not match ID_PATTERN.
        names = []
        for e in self._entries(vdir):
            if e.is_dir(follow_symlinks=False):
                check_no_links(self.root, Path(e.path) / MANIFEST_FILE)
                if os.path.isfile(os.path.join(e.path, MANIFEST_FILE)):
                    names.append(e.name)
        return sorted(names)

    def _require_product(self, product_id: str) -> None:
        if not self._version_names(product_id):
            known = ", ".join(self.products()) or "none"
            raise ReferenceError(
                f"unknown product {product_id!r} in {self.root} (known: {known}); add a reference with add_version"
            )

    def _manifest(self, product_id: str, version: str, check_seal: bool = True) -> dict[str, Any]:
        """A version's manifest, validated and checked against its own checksum (format 2), or an
        unsealed format-1 manifest of a product no writer of this release has touched yet."""
        path = self._version_dir(product_id, version) / MANIFEST_FILE
        raw = self._read(path, MAX_JSON_BYTES, "manifest")
        if raw is None:
            self._require_product(product_id)
            known = ", ".join(self._version_names(product_id))
            raise ReferenceError(f"product {product_id!r} has no version {version!r} (versions: {known})")
        data = parse_json(raw, path, "manifest")
        if not isinstance(data, dict) or data.get("format") not in (LEGACY_FORMAT, FORMAT_VERSION):
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ReferenceError(
                f"manifest {path} is not a reference manifest of format {LEGACY_FORMAT} or {FORMAT_VERSION} "
                f"(found {found!r}); restore it or remove the version"
            )
        validate_model(Manifest, data, path, "manifest")
        if data["format"] == FORMAT_VERSION:
            verify_checksum(data, path, "manifest")
        elif check_seal and (
            self._pointer(product_id, check_seal=False)["format"] == FORMAT_VERSION or self._sealed(product_id)
        ):
            raise ReferenceError(
                f"manifest {path} is unsealed (format {LEGACY_FORMAT}) in a product whose files are sealed; it was "
                f"edited or copied in - restore it, or seal it with 'differad-calibrate upgrade' if you trust it"
            )
        return data

    def _sealed(self, product_id: str) -> bool:
        """Whether a writer of this release has touched the product (its first manifest is format 2:
        writers seal every manifest of a product at once, so one stands for all)."""
        names = self._version_names(product_id)
        if not names:
            return False
        path = self._version_dir(product_id, names[0]) / MANIFEST_FILE
        raw = self._read(path, MAX_JSON_BYTES, "manifest")
        data = parse_json(raw, path, "manifest") if raw is not None else None
        return isinstance(data, dict) and data.get("format") == FORMAT_VERSION

    def _write_manifest(self, product_id: str, version: str, manifest: dict[str, Any]) -> None:
        """The one way a manifest is (re)written: sealed with its checksum, never through a link."""
        path = self._version_dir(product_id, version) / MANIFEST_FILE
        check_no_links(self.root, path)
        atomic_write_json(path, seal(manifest))

    def _pointer(self, product_id: str, check_seal: bool = True) -> dict[str, Any]:
        path = self._product_dir(product_id) / ACTIVE_FILE
        raw = self._read(path, MAX_JSON_BYTES, "active pointer")
        if raw is None:
            return {"version": None, "previous": [], "format": None, "event": None}
        hit = self._pointer_cache.get(path)
        if hit is not None and hit[0] == raw:
            return {**hit[1], "previous": list(hit[1]["previous"])}
        data = parse_json(raw, path, "active pointer")
        ptr = validate_model(Pointer, data, path, "active pointer")
        if ptr.format != LEGACY_FORMAT:
            verify_checksum(data, path, "active pointer")
        elif check_seal and self._sealed(product_id):
            raise ReferenceError(
                f"active pointer {path} is unsealed (format {LEGACY_FORMAT}) in a product whose files are sealed; it "
                "was edited - restore it, or seal it with 'differad-calibrate upgrade' if you trust it"
            )
        result = {"version": ptr.version, "previous": list(ptr.previous), "format": ptr.format, "event": ptr.event}
        if ptr.format != LEGACY_FORMAT:  # a format-1 pointer's verdict depends on other files: never cached
            self._pointer_cache[path] = (raw, {**result, "previous": list(ptr.previous)})
        return result

    def active_version(self, product_id: str) -> str | None:
        """The active version id, reading one small file (cheap enough to call per frame)."""
        return self._pointer(product_id)["version"]

    def rollback_target(self, product_id: str) -> str | None:
        """The version ``rollback`` would activate (None when there is none), for a warning beforehand."""
        previous = self._pointer(product_id)["previous"]
        return previous[-1] if previous else None

    def versions(self, product_id: str) -> list[VersionInfo]:
        self._require_product(product_id)
        active = self.active_version(product_id)
        return [
            self._info(product_id, v, self._manifest(product_id, v), active) for v in self._version_names(product_id)
        ]

    def info(self, product_id: str, version: str) -> VersionInfo:
        return self._info(product_id, version, self._manifest(product_id, version), self.active_version(product_id))

    @staticmethod
    def _info(product_id: str, version: str, m: dict[str, Any], active: str | None) -> VersionInfo:
        return VersionInfo(
            product_id=product_id,
            version=version,
            status=m.get("status", "candidate"),
            active=version == active,
            created=m.get("created", ""),
            files={k: str(v) for k, v in m["files"].items()},
            size=tuple(m.get("size", (0, 0))),
            metadata=dict(m.get("metadata") or {}),
            validation=m.get("validation"),
            status_history=list(m.get("status_history", [])),
        )

    def _read_verified(self, product_id: str, version: str, manifest: dict[str, Any], name: str) -> bytes:
        path = self._version_dir(product_id, version) / name
        data = self._read(path, MAX_BLOB_BYTES, "reference file")
        if data is None:
            raise ReferenceError(f"reference file {path} is missing; roll back or re-add the version")
        expected = manifest["files"].get(name)
        actual = sha256_bytes(data)
        if actual != expected:
            raise ReferenceError(
                f"checksum mismatch for {path}: manifest says sha256 {expected}, file has {actual}; "
                "the file was altered or corrupted - roll back or add the reference again"
            )
        return data

    def load(self, product_id: str, version: str | None = None) -> Reference:
        """The active (or given) version as an engine ``Reference``; every file is checked against
        its sha256 first."""
        if version is None:
            version = self.active_version(product_id)
            if version is None:
                self._require_product(product_id)
                raise ReferenceError(
                    f"product {product_id!r} has no active version; validate one and promote it "
                    "(or promote(..., force=True, reason=...))"
                )
        m = self._manifest(product_id, version)
        blobs = {name: self._read_verified(product_id, version, m, name) for name in sorted(m["files"])}
        try:
            image = decode_image(blobs[IMAGE_FILE])
            h, w = image.shape[:2]
            care = decode_gray(blobs[MASK_FILE]) if MASK_FILE in blobs else None
            if care is not None and care.shape != (h, w):
                raise ValueError(f"care mask is {care.shape[::-1]}, the reference is {(w, h)}")
            mean = _load_npy(blobs, MEAN_FILE, (h, w))
            spread = _load_npy(blobs, SPREAD_FILE, (h, w))
        except (KeyError, ValueError, ImageError, EOFError) as e:
            raise ReferenceError(f"reference {product_id}/{version} has unusable files: {e}") from e
        content = sha256_bytes(json.dumps(m["files"], sort_keys=True).encode())
        return Reference(
            image=image,
            product_id=product_id,
            version=version,
            care_mask=care,
            mean=mean,
            spread=spread,
            sha256=content,
            metadata=_engine_metadata(m),
        )

    def extra_images(self, product_id: str, version: str) -> list[np.ndarray]:
        """The additional good images stored with a version (checksummed like the rest)."""
        m = self._manifest(product_id, version)
        names = sorted(n for n in m["files"] if n.startswith("extra_"))
        return [decode_image(self._read_verified(product_id, version, m, n)) for n in names]

    def _history_lines(self, product_id: str) -> tuple[bytes, list[dict[str, Any]]]:
        """The raw log and its events; a damaged line is a ``ReferenceError`` naming it (the log is
        written atomically, so only an edit or disk damage makes one), never skipped silently."""
        path = self._product_dir(product_id) / HISTORY_FILE
        raw = self._read(path, MAX_HISTORY_BYTES, "history") or b""
        events = []
        for no, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                data = parse_json(line, path, "history")
                validate_model(Event, data, path, "history")
            except ReferenceError as e:
                raise ReferenceError(f"line {no} of {e}") from e
            events.append(data)
        return raw, events

    def history(self, product_id: str) -> list[dict[str, Any]]:
        """Every event, oldest first. A pointer change whose log append did not happen yet (a crash
        right after the commit) is included from the pointer file, where it was committed."""
        _, events = self._history_lines(product_id)
        pending = self._pointer(product_id)["event"]
        if pending and pending.get("id") not in {e.get("id") for e in events}:
            events.append(pending)
        return events

    # -- writing ------------------------------------------------------------------------------
    def add_version(
        self,
        product_id: str,
        image: np.ndarray,
        *,
        care_mask: np.ndarray | None = None,
        mean: np.ndarray | None = None,
        spread: np.ndarray | None = None,
        extra_images: Iterable[np.ndarray] = (),
        metadata: dict[str, Any] | None = None,
        version: str | None = None,
        operator: str | None = None,
    ) -> str:
        """Write a new *candidate* version and return its id (``v0001``, ``v0002``, ... unless given).
        ``operator`` (who built it) goes into the history event, for the audit trail."""
        pdir = self._product_dir(product_id)
        if version is not None:
            validate_id(version, "version")
        files = self._encode_files(image, care_mask, mean, spread, extra_images)
        meta = dict(metadata or {})
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"reference metadata must be JSON-serialisable: {e}; pass plain values") from e
        vroot = pdir / "versions"
        check_no_links(self.root, vroot)
        vroot.mkdir(parents=True, exist_ok=True)
        check_no_links(self.root, vroot)
        tmp = vroot / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"  # the pid tells a dead writer's leftover
        tmp.mkdir()
        created = _now()
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        manifest = {
            "product_id": product_id,
            "created": created,
            "size": list(image_size(to_rgb8(image))),
            "files": {name: sha256_bytes(data) for name, data in files.items()},
            "metadata": meta,
            "status": "candidate",
            "validation": None,
            "status_history": [{"status": "candidate", "time": created}],
        }
        try:
            with _product_lock(pdir):
                self._housekeeping(product_id)
                self._history_lines(product_id)  # a damaged log refuses the add before anything moved
                for attempt in range(1000):
                    vid = version or self._next_version_id(product_id, attempt)
                    atomic_write_json(tmp / MANIFEST_FILE, seal({**manifest, "version": vid}))
                    try:
                        os.rename(tmp, vroot / vid)  # fails if the name exists: the id is claimed atomically
                    except OSError as e:
                        if version is not None:
                            raise ReferenceError(
                                f"version {version!r} of {product_id!r} already exists; pick a new id"
                            ) from e
                        continue
                    self._log(product_id, _audit({"event": "add", "version": vid}, operator=operator))
                    return vid
            raise ReferenceError(f"could not allocate a version id for {product_id!r}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; debris after any failure

    def _next_version_id(self, product_id: str, bump: int) -> str:
        nums = [int(v[1:]) for v in self._version_names(product_id) if re.fullmatch(r"v\d+", v)]
        return f"v{(max(nums, default=0) + 1 + bump):04d}"

    @staticmethod
    def _encode_files(
        image: np.ndarray,
        care_mask: np.ndarray | None,
        mean: np.ndarray | None,
        spread: np.ndarray | None,
        extra_images: Iterable[np.ndarray],
    ) -> dict[str, bytes]:
        rgb = to_rgb8(image)
        w, h = image_size(rgb)
        files = {IMAGE_FILE: encode_image(rgb, ".png")}
        for i, extra in enumerate(extra_images):
            ex = to_rgb8(extra)
            if ex.shape != rgb.shape:
                raise ImageError(f"extra image {i} is {image_size(ex)}, the reference is {(w, h)}; align/crop it")
            files[f"extra_{i:03d}.png"] = encode_image(ex, ".png")
        if care_mask is not None:
            cm = np.asarray(care_mask)
            if cm.shape != (h, w):
                raise ImageError(f"care mask has shape {cm.shape}, expected {(h, w)} (HxW of the reference)")
            files[MASK_FILE] = encode_image(np.where(cm > 0, 255, 0).astype(np.uint8), ".png")
        for name, arr in ((MEAN_FILE, mean), (SPREAD_FILE, spread)):
            if arr is None:
                continue
            a = np.asarray(arr, dtype=np.float32)
            if a.shape not in ((h, w), (h, w, 3)) or not np.all(np.isfinite(a)):
                raise ImageError(f"{name[:-4]} must be finite float HxW or HxWx3 of {(h, w)}, got shape {a.shape}")
            if name == SPREAD_FILE and a.min() < 0:
                raise ImageError("spread must be >= 0 everywhere (it is a per-pixel standard deviation)")
            files[name] = _npy_bytes(a)
        return files

    @_locked
    def set_validation(
        self,
        product_id: str,
        version: str,
        passed: bool,
        report: dict[str, Any],
        *,
        operator: str | None = None,
        inputs: list[dict[str, Any]] | None = None,
        report_files: list[str] | None = None,
    ) -> VersionInfo:
        """Record a validation result: ``validated`` if passed, else ``rejected``.

        The audit trail (issue 16): ``operator``, the ``inputs`` the run judged (file names and
        sha256) and the ``report_files`` it wrote are kept in the manifest and in the history event,
        so an auditor can tell which frames each run used. A *rejected* version is never judged again
        (an easier set must not flip it to validated): build a new candidate.

        An active *validated* version is refused: its verdict (and the thresholds it carries to the
        engine) is what it went live with, and a later run must not reject or retune the good live
        reference. A force-promoted version that was never validated may still be validated.
        """
        m = self._manifest(product_id, version)
        self.check_can_validate(product_id, version, m)
        try:
            json.dumps(report)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"validation report must be JSON-serialisable: {e}") from e
        status: Status = "validated" if passed else "rejected"
        now = _now()
        m["status"] = status
        audit = _audit({}, operator=operator, inputs=inputs, report_files=report_files)
        m["validation"] = {"passed": bool(passed), "time": now, "report": report, **audit}
        m["status_history"] = [*m.get("status_history", []), {"status": status, "time": now}]
        # Everything that can refuse is read first, so a refusal leaves the store as it was.
        active = self.active_version(product_id)
        self._history_lines(product_id)
        try:
            Manifest.model_validate(m)
        except ValueError as e:
            raise ConfigError(f"validation report cannot be stored: {' '.join(str(e).split())[:300]}") from e
        self._write_manifest(product_id, version, m)
        self._log(product_id, {"event": "validation", "version": version, "status": status, **audit})
        return self._info(product_id, version, m, active)

    def check_can_validate(self, product_id: str, version: str, manifest: dict[str, Any] | None = None) -> None:
        """Refuse to re-judge the validated live reference or a rejected version (see ``set_validation``)."""
        m = manifest if manifest is not None else self._manifest(product_id, version)
        if m.get("status") == "rejected":
            raise ReferenceError(
                f"{product_id}/{version} was rejected by an earlier validation; a rejected version stays rejected "
                "(re-validating it with other frames would hide the failure) - build a new candidate and validate that"
            )
        if m.get("status") == "validated" and self.active_version(product_id) == version:
            raise ReferenceError(
                f"{product_id}/{version} is the active, validated version; its validation cannot be changed while "
                "it is live - build a new candidate from fresh frames and validate that"
            )

    @_locked
    def promote(
        self,
        product_id: str,
        version: str,
        force: bool = False,
        reason: str | None = None,
        *,
        operator: str | None = None,
    ) -> None:
        """Make ``version`` active. Only validated versions, unless ``force=True`` with a reason."""
        m = self._manifest(product_id, version)
        status = m.get("status", "candidate")
        if status != "validated":
            if not force:
                raise ReferenceError(
                    f"{product_id}/{version} is {status}, not validated; run validation (set_validation) "
                    "or promote(..., force=True, reason='why')"
                )
            if not reason or not str(reason).strip():
                raise ConfigError("promote(force=True) needs a reason (it is written to the history log)")
        self.load(product_id, version)  # never activate a version whose files fail their checksum
        ptr = self._pointer(product_id)
        previous = [v for v in ptr["previous"] if v != version]
        if ptr["version"] and ptr["version"] != version:
            previous.append(ptr["version"])
        self._commit_pointer(
            product_id,
            version,
            previous,
            {
                "event": "promote",
                "version": version,
                "from": ptr["version"],
                "status": status,
                "forced": bool(force and status != "validated"),
                "reason": reason,
                **_audit({}, operator=operator),
            },
        )

    @_locked
    def rollback(
        self, product_id: str, *, force: bool = False, reason: str | None = None, operator: str | None = None
    ) -> str:
        """Re-activate the version that was active before the current one; returns its id.

        A target that is not *validated* (rejected, or a candidate that went live by a forced promote)
        is refused unless ``force=True``: a rollback must not quietly bring back a reference that
        never passed validation (issue 16)."""
        ptr = self._pointer(product_id)
        if not ptr["previous"]:
            self._require_product(product_id)
            raise ReferenceError(f"product {product_id!r} has no previously active version to roll back to")
        target = ptr["previous"][-1]
        status = self._manifest(product_id, target).get("status", "candidate")
        if status != "validated" and not force:
            raise ReferenceError(
                f"rolling back {product_id} would activate {target}, which is {status} (it went live by a forced "
                "promote, not by passing validation); pass --force (rollback(..., force=True)) to accept it anyway"
            )
        self.load(product_id, target)
        event = {"event": "rollback", "version": target, "from": ptr["version"], "status": status}
        if status != "validated":
            event.update(forced=True, reason=reason)
        self._commit_pointer(product_id, target, ptr["previous"][:-1], _audit(event, operator=operator))
        return target

    def _write_pointer(
        self, product_id: str, version: str | None, previous: list[str], event: dict[str, Any] | None = None
    ) -> None:
        path = self._product_dir(product_id) / ACTIVE_FILE
        check_no_links(self.root, path)
        atomic_write_json(path, seal({"version": version, "previous": previous, "time": _now(), "event": event}))

    def _commit_pointer(self, product_id: str, version: str, previous: list[str], event: dict[str, Any]) -> None:
        """Move the pointer and log why, as one atomic step.

        Protocol: (1) the log is read and checked first, so a damaged log refuses the change before
        anything moved; (2) the new pointer is written *with its event inside* - this rename is the
        commit: readers (``history()`` included) see both or neither; (3) the event is appended to
        ``history.jsonl``. A crash between (2) and (3) loses nothing: ``history()`` shows the event
        from the pointer, and the next writer of the product appends it (``_housekeeping``).
        """
        self._history_lines(product_id)  # (1)
        event = {"time": _now(), **event, "id": uuid.uuid4().hex}
        self._write_pointer(product_id, version, previous, event)  # (2) the commit
        try:
            self._log(product_id, event)  # (3)
        except OSError:
            pass  # committed already; flushed by the next writer

    def _log(self, product_id: str, event: dict[str, Any]) -> None:
        """Append an event by rewriting the (small) log atomically: no torn lines after a crash.
        A damaged log is refused (``ReferenceError``) rather than rewritten around its bad lines."""
        path = self._product_dir(product_id) / HISTORY_FILE
        check_no_links(self.root, path)
        old, _ = self._history_lines(product_id)
        if old and not old.endswith(b"\n"):
            old += b"\n"
        line = json.dumps({"time": _now(), **event}, sort_keys=True)
        atomic_write_bytes(path, old + line.encode("utf-8") + b"\n")

    def _housekeeping(self, product_id: str) -> None:
        """What every writer of a product does first, under its lock: remove temp entries of writers
        that died, append a committed pointer event the log lacks, and seal format-1 manifests
        (the upgrade from earlier releases; the pointer then says format 2)."""
        pdir = self._product_dir(product_id)
        if not pdir.is_dir():
            return
        check_no_links(self.root, pdir / "versions")
        folders = [pdir, pdir / "versions"]
        folders += [pdir / "versions" / v for v in self._version_names(product_id)]
        clean_stale_temps(folders)
        ptr = self._pointer(product_id, check_seal=False)
        pending = ptr["event"]
        if pending:
            _, events = self._history_lines(product_id)
            if pending.get("id") not in {e.get("id") for e in events}:
                self._log(product_id, pending)
        self._seal_legacy(product_id, ptr, force=False)

    def _seal_legacy(self, product_id: str, ptr: dict[str, Any], force: bool) -> None:
        """The upgrade from format 1: seal the manifests and the pointer. Automatic only for a product
        wholly of an earlier release; a mix of sealed and unsealed files (an edit, or a crash during
        an upgrade) is sealed only on request (``upgrade``), after the operator checked it."""
        names = self._version_names(product_id)
        manifests = {v: self._manifest(product_id, v, check_seal=False) for v in names}
        legacy = [v for v, m in manifests.items() if m["format"] == LEGACY_FORMAT]
        pure_old = len(legacy) == len(names) and ptr["format"] != FORMAT_VERSION
        if not (force or pure_old):
            return
        for v in legacy:
            self._write_manifest(product_id, v, manifests[v])
        if ptr["format"] == LEGACY_FORMAT:
            self._write_pointer(product_id, ptr["version"], ptr["previous"], ptr["event"])

    def upgrade(self, product_id: str) -> None:
        """Seal a product's format-1 manifests now (any write does it too)."""
        with _product_lock(self._product_dir(product_id)):
            self._require_product(product_id)
            self._seal_legacy(product_id, self._pointer(product_id, check_seal=False), force=True)
            self._housekeeping(product_id)


__all__ = ["ID_PATTERN", "ReferenceStore", "VersionInfo", "validate_id"]


def _audit(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``event`` plus the audit fields that were given (operator, inputs, report files); ``None`` is
    left out so events of callers that name no operator look as before."""
    return {**event, **{k: v for k, v in fields.items() if v is not None}}


def _load_npy(blobs: dict[str, bytes], name: str, hw: tuple[int, int]) -> np.ndarray | None:
    """A variation-model array: float32, finite, HxW or HxWx3 of the reference (no pickles)."""
    if name not in blobs:
        return None
    arr = np.load(io.BytesIO(blobs[name]), allow_pickle=False)
    if arr.dtype != np.float32 or arr.shape not in (hw, (*hw, 3)) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite float32 of shape {hw} or {(*hw, 3)}, got {arr.dtype} {arr.shape}")
    return arr


def _engine_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """A version's metadata plus the golden thresholds its passed validation tuned, so engines use
    what calibration chose for this reference without the operator copying numbers around."""
    meta = dict(manifest.get("metadata") or {})
    validation = manifest.get("validation") or {}
    tuned = (validation.get("report") or {}).get("golden") if validation.get("passed") else None
    if tuned:
        meta.setdefault(TUNED_KEY, dict(tuned))
    return meta
