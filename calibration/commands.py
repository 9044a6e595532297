"""The operations behind ``differad-calibrate``, as plain functions (the CLI only parses and prints).

``validate`` needs the candidate, the held-out frames and the store together; the rest are thin
wrappers over :class:`differad_edge.store.ReferenceStore` so that every rule about versions
(only validated ones go live, forced promotions are logged, atomic pointer) lives in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from differad_edge.errors import CalibrationError, ReferenceError
from differad_edge.images import load_image
from differad_edge.store import ReferenceStore, VersionInfo

from .config import ValidateConfig
from .report import write_report
from .session import Session
from .sources import IMAGE_EXTENSIONS
from .validate import Sample, ValidationResult, load_defects, validate_reference


def require_product(store: ReferenceStore, product_id: str) -> list[VersionInfo]:
    """The product's versions; an unknown product is an error naming the known ones."""
    return store.versions(product_id)


def latest_candidate(store: ReferenceStore, product_id: str) -> str:
    """Newest version not validated yet (what ``validate`` checks when no ``--version`` is given)."""
    versions = require_product(store, product_id)
    candidates = [v for v in versions if v.status == "candidate"]
    if not candidates:
        raise CalibrationError(
            f"product {product_id!r} has no unvalidated candidate (versions: "
            f"{', '.join(f'{v.version}={v.status}' for v in versions)}); build one or pass --version"
        )
    return max(candidates, key=lambda v: (v.created, v.version)).version


def folder_samples(folder: str | Path) -> list[Sample]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"--good {folder} is not a folder of good frames")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CalibrationError(f"--good {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    from differad_edge.errors import ImageError

    out = []
    for p in files:
        try:
            out.append(Sample(p.name, load_image(p)))
        except ImageError as e:
            raise CalibrationError(f"unreadable good frame {p}: {e}") from e
    return out


def session_samples(session: Session) -> list[Sample]:
    """The session's held-out frames that passed the gates (a rejected frame is not a fair test)."""
    frames = session.select("holdout")
    return [Sample(f.name, img) for f, img in zip(frames, session.load_images(frames), strict=True)]


def run_validation(
    store: ReferenceStore,
    product_id: str,
    version: str | None = None,
    *,
    session: Session | None = None,
    good_dirs: Sequence[str | Path] = (),
    defects_dir: str | Path | None = None,
    labels: str | Path | None = None,
    config: ValidateConfig | None = None,
    report_dir: str | Path | None = None,
    progress: bool = False,
) -> ValidationResult:
    """Validate a candidate, write the HTML report and record the verdict in the store."""
    config = config or ValidateConfig()
    version = version or latest_candidate(store, product_id)
    info = store.info(product_id, version)
    store.check_can_validate(product_id, version)  # fail before the run, not after it
    reference = store.load(product_id, version)
    samples: list[Sample] = []
    if session is not None:
        if session.product_id != product_id:
            raise CalibrationError(f"session {session.root} is for product {session.product_id!r}, not {product_id!r}")
        samples += session_samples(session)
    for d in good_dirs:
        samples += folder_samples(d)
    if defects_dir is not None:
        samples += load_defects(defects_dir, labels)
    motion = (info.metadata.get("calibration", {}).get("build_config", {}) or {}).get("motion", "euclidean")
    result = validate_reference(reference, samples, config, motion=motion, progress=progress)
    if report_dir is not None:
        result.report_path = write_report(result, reference, report_dir, info)
    store.set_validation(product_id, version, result.passed, result.to_json())
    return result


def promote(store: ReferenceStore, product_id: str, version: str, force: bool = False, reason: str | None = None) -> None:
    if force and not (reason and reason.strip()):
        raise CalibrationError("--force needs --reason 'why' (it is written to the history log)")
    store.promote(product_id, version, force=force, reason=reason)


def rollback(store: ReferenceStore, product_id: str) -> str:
    return store.rollback(product_id)


def list_products(store: ReferenceStore, product_id: str | None = None) -> list[dict[str, Any]]:
    """One row per version (of one product or all), with status and the validation numbers."""
    products = [product_id] if product_id else store.products()
    if not products:
        raise ReferenceError(f"the reference store {store.root} holds no products yet; capture and build one first")
    rows = []
    for pid in products:
        for v in require_product(store, pid):
            report = (v.validation or {}).get("report", {}) or {}
            rows.append(
                {
                    "product": pid,
                    "version": v.version,
                    "status": v.status,
                    "active": v.active,
                    "created": v.created,
                    "false_alarm_rate": report.get("false_alarm_rate"),
                    "detection_rate": report.get("detection_rate"),
                }
            )
    return rows


def show(store: ReferenceStore, product_id: str, version: str | None = None) -> dict[str, Any]:
    """Everything known about one version (default: the active one, else the newest)."""
    versions = require_product(store, product_id)
    if version is None:
        version = store.active_version(product_id) or versions[-1].version
    info = store.info(product_id, version)
    return {
        "product": product_id,
        "version": info.version,
        "status": info.status,
        "active": info.active,
        "created": info.created,
        "size": list(info.size),
        "files": info.files,
        "metadata": info.metadata,
        "validation": info.validation,
        "status_history": info.status_history,
        "history": [e for e in store.history(product_id) if e.get("version") == info.version],
    }
