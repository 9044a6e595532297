"""The operations behind ``differad-calibrate``, as plain functions (the CLI only parses and prints).

``validate`` needs the candidate, the held-out frames and the store together; the rest are thin
wrappers over :class:`differad_edge.store.ReferenceStore` so that every rule about versions
(only validated ones go live, forced promotions are logged, atomic pointer) lives in the store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from differad_edge.alignment import Motion
from differad_edge.errors import CalibrationError, ReferenceError
from differad_edge.fileio import sha256_file
from differad_edge.images import IMAGE_EXTENSIONS, load_image
from differad_edge.store import ReferenceStore, VersionInfo

from .config import ValidateConfig
from .report import write_report
from .session import Session
from .validate import Sample, ValidationResult, load_defects, validate_reference

OPERATOR_ENV = "DIFFERAD_OPERATOR"


def resolve_operator(operator: str | None, required: bool = True) -> str | None:
    """Who acts: ``--operator``, else ``$DIFFERAD_OPERATOR``; the history names them for the audit trail."""
    name = (operator if operator is not None else os.environ.get(OPERATOR_ENV, "")).strip()
    if not name:
        if required:
            raise CalibrationError(
                f"name the operator with --operator NAME or {OPERATOR_ENV}=NAME (it is written to the history for the audit trail)"
            )
        return None
    if len(name) > 100 or not name.isprintable():
        raise CalibrationError(f"operator name {name[:40]!r} must be 1-100 printable characters")
    return name


def new_report_dir(root: str | Path, product_id: str, version: str) -> Path:
    """A fresh, timestamped report folder under ``root``: every validation keeps its own report."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = Path(root) / f"report-{product_id}-{version}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


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
            out.append(Sample(p.name, load_image(p), file=str(p), sha256=sha256_file(p)))
        except ImageError as e:
            raise CalibrationError(f"unreadable good frame {p}: {e}") from e
    return out


def session_samples(session: Session) -> list[Sample]:
    """The session's held-out frames that passed the gates (a rejected frame is not a fair test)."""
    frames = session.select("holdout")
    return [
        Sample(f.name, img, file=str(session.root / f.file), sha256=f.sha256)
        for f, img in zip(frames, session.load_images(frames), strict=True)
    ]


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
    operator: str | None = None,
) -> ValidationResult:
    """Validate a candidate, write the HTML report and record the verdict in the store.

    Audit trail: the report goes to a folder of its own (an existing non-empty ``report_dir`` is
    refused, never overwritten); the history records every input (file and sha256), the report
    file and the operator."""
    config = config or ValidateConfig()
    version = version or latest_candidate(store, product_id)
    info = store.info(product_id, version)
    store.check_can_validate(product_id, version)  # fail before the run, not after it
    if (
        report_dir is not None
        and Path(report_dir).exists()
        and (not Path(report_dir).is_dir() or any(Path(report_dir).iterdir()))
    ):
        raise CalibrationError(
            f"report folder {report_dir} exists already; reports are never overwritten - choose a new --report "
            "or leave it out for a timestamped folder"
        )
    reference = store.load(product_id, version)
    samples: list[Sample] = []
    if session is not None:
        if session.product_id != product_id:
            raise CalibrationError(f"session {session.root} is for product {session.product_id!r}, not {product_id!r}")
        samples += session_samples(session)
    for d in good_dirs:
        samples += folder_samples(d)
    inputs: list[dict[str, Any]] = []
    if defects_dir is not None:
        samples += load_defects(defects_dir, labels)
        label_file = Path(labels) if labels is not None else Path(defects_dir) / "labels.json"
        inputs.append(
            {"name": label_file.name, "kind": "labels", "file": str(label_file), "sha256": sha256_file(label_file)}
        )
    inputs = [s.input_record() for s in samples] + inputs
    motion = (info.metadata.get("calibration", {}).get("build_config", {}) or {}).get("motion", Motion.EUCLIDEAN)
    result = validate_reference(reference, samples, config, motion=motion, progress=progress)
    if report_dir is not None:
        result.report_path = write_report(result, reference, report_dir, info)
    store.set_validation(
        product_id,
        version,
        result.passed,
        result.to_json(),
        operator=operator,
        inputs=inputs,
        report_files=[str(result.report_path)] if result.report_path else None,
    )
    return result


def promote(
    store: ReferenceStore,
    product_id: str,
    version: str,
    force: bool = False,
    reason: str | None = None,
    operator: str | None = None,
) -> None:
    if force and not (reason and reason.strip()):
        raise CalibrationError("--force needs --reason 'why' (it is written to the history log)")
    store.promote(product_id, version, force=force, reason=reason, operator=operator)


def rollback_target(store: ReferenceStore, product_id: str) -> VersionInfo | None:
    """The version a rollback would activate (None when there is none), so a caller can warn first."""
    version = store.rollback_target(product_id)
    return store.info(product_id, version) if version else None


def rollback(
    store: ReferenceStore, product_id: str, force: bool = False, reason: str | None = None, operator: str | None = None
) -> str:
    """Re-activate the previous version; onto a version that is not validated only with ``force``
    and a reason (the store refuses it otherwise)."""
    target = rollback_target(store, product_id)
    if force and target is not None and target.status != "validated" and not (reason and reason.strip()):
        raise CalibrationError(
            f"rolling back onto {product_id}/{target.version} ({target.status}) needs --reason 'why' with --force"
        )
    return store.rollback(product_id, force=force, reason=reason, operator=operator)


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


def summary_lines(details: dict[str, Any]) -> list[str]:
    """``show`` for a person: status, build, the last validation (numbers, failing frames, inputs,
    report, operator) and this version's history; ``--json`` prints ``details`` whole."""
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    cal = (details.get("metadata") or {}).get("calibration", {}) or {}
    build = cal.get("build", {}) or {}
    gates = cal.get("gates", {}) or {}
    w, h = (details.get("size") or [0, 0])[:2]
    lines = [
        f"{details['product']}/{details['version']}: {details['status']}{' (active)' if details['active'] else ''}",
        f"  created {details['created']}, {w}x{h} px",
    ]
    if build:
        lines.append(
            f"  built from {len(build.get('frames_used', []))} frames of {gates.get('frames', '?')} captured "
            f"({gates.get('accepted', '?')} accepted), anchor {build.get('anchor', '-')}, care area {pct(build.get('care_fraction'))}"
        )
        if cal.get("session"):
            lines.append(f"  session {cal['session']} ({cal.get('source', '')})")
    val = details.get("validation")
    if val:
        rep = val.get("report", {}) or {}
        thresholds = ", ".join(f"{k}={v}" for k, v in (rep.get("golden") or {}).items()) or "none"
        lines.append(
            f"  validation {'PASSED' if val.get('passed') else 'FAILED'} {val.get('time', '')} by {val.get('operator') or 'unknown'}: "
            f"false alarms {pct(rep.get('false_alarm_rate'))} on {rep.get('n_good', '?')} good frames, "
            f"detection {pct(rep.get('detection_rate'))} on {rep.get('n_defect', '?')} defects; thresholds {thresholds}"
        )
        for r in rep.get("reasons", []):
            lines.append(f"    {r}")
        for key, label in (
            ("false_alarms", "false alarm"),
            ("missed", "missed defect"),
            ("alignment_failures", "not aligned"),
        ):
            for name in rep.get(key, []) or []:
                lines.append(f"    {label}: {name}")
        inputs = val.get("inputs") or []
        if inputs:
            kinds = {k: sum(i.get("kind") == k for i in inputs) for k in ("good", "defect", "labels")}
            lines.append(
                f"    inputs: {kinds['good']} good, {kinds['defect']} defect frames, {kinds['labels']} label files (sha256 in --json)"
            )
        for f in val.get("report_files") or []:
            lines.append(f"    report: {f}")
    else:
        lines.append("  not validated yet")
    history = details.get("history") or []
    if history:
        lines.append("  history:")
        for e in history:
            extra = []
            if e.get("status"):
                extra.append(str(e["status"]))
            if e.get("forced"):
                extra.append("FORCED")
            if e.get("reason"):
                extra.append(f"reason: {e['reason']}")
            if e.get("operator"):
                extra.append(f"by {e['operator']}")
            lines.append(f"    {e.get('time', '')}  {e.get('event')}{(' - ' + ', '.join(extra)) if extra else ''}")
    return lines
