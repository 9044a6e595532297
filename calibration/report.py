"""The validation report a field engineer reads before promoting: one HTML page plus its PNGs.

``REPORT_DIR/index.html`` links ``images/*.png`` (reference, variation map, care mask, and per
held-out frame the residual heat map and the detections), so the folder can be zipped or served.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from differad_edge.engines.base import Reference
from differad_edge.fileio import atomic_write_text
from differad_edge.images import save_image
from differad_edge.viz import draw_boxes, heatmap, overlay_heatmap

from .validate import ValidationResult, residual_map

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1 span.pass{color:#0a7d28} h1 span.fail{color:#b3261e}
table{border-collapse:collapse;margin:8px 0 16px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2} tr.chosen td{background:#e3f5e6;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:14px} figure{margin:0} figcaption{font-size:12px;max-width:420px}
img{image-rendering:pixelated;border:1px solid #ccc;max-width:420px} .bad{color:#b3261e} .ok{color:#0a7d28}
"""


def _img(out: Path, name: str, rgb: np.ndarray) -> str:
    save_image(out / "images" / name, rgb)
    return f"images/{name}"


def _figure(src: str, caption: str) -> str:
    return f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"><figcaption>{caption}</figcaption></figure>'


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def write_report(result: ValidationResult, reference: Reference, out_dir: str | Path, info: Any = None) -> Path:
    """Write ``out_dir/index.html`` and its images; returns the HTML path."""
    out = Path(out_dir)
    chosen = result.chosen
    judged = result.judged or result.grid[0]  # the chosen setting, or the one with the fewest false alarms
    k, abs_t = judged.k, judged.abs_threshold
    spread = reference.spread
    parts: list[str] = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Calibration report {html.escape(result.product_id)}/{html.escape(result.version)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(result.product_id)} / {html.escape(result.version)}: "
        f"<span class='{'pass' if result.passed else 'fail'}'>{'PASSED' if result.passed else 'FAILED'}</span></h1>",
    ]
    if result.reasons:
        parts.append("<ul>" + "".join(f"<li class='bad'>{html.escape(r)}</li>" for r in result.reasons) + "</ul>")
    summary = result.to_json()
    parts.append(
        "<table><tr><th>held-out good frames</th><th>known defects</th><th>false-alarm rate</th>"
        "<th>target</th><th>detection rate</th><th>required</th><th>chosen k</th><th>chosen abs threshold</th></tr>"
        f"<tr><td>{summary['n_good']}</td><td>{summary['n_defect']}</td><td>{_pct(summary['false_alarm_rate'])}</td>"
        f"<td>{_pct(result.config.target_false_alarm_rate)}</td><td>{_pct(summary['detection_rate'])}</td>"
        f"<td>{_pct(result.config.min_detection_rate) if summary['n_defect'] else 'n/a'}</td>"
        f"<td>{chosen.k if chosen else '-'}</td><td>{chosen.abs_threshold if chosen else '-'}</td></tr></table>"
    )
    if info is not None:
        cal = (getattr(info, "metadata", {}) or {}).get("calibration", {})
        gates = cal.get("gates", {})
        build = cal.get("build", {})
        if gates or build:
            parts.append(
                "<h2>Capture and build</h2><table><tr><th>frames</th><th>accepted</th>"
                + "".join(f"<th>rejected: {html.escape(g)}</th>" for g in gates.get("rejected_by_gate", {}))
                + "<th>used in build</th><th>anchor</th><th>median spread</th><th>care area</th></tr><tr>"
                f"<td>{gates.get('frames', '-')}</td><td>{gates.get('accepted', '-')}</td>"
                + "".join(f"<td>{n}</td>" for n in gates.get("rejected_by_gate", {}).values())
                + f"<td>{len(build.get('frames_used', []))}</td><td>{html.escape(str(build.get('anchor', '-')))}</td>"
                f"<td>{build.get('spread_median', '-')}</td><td>{_pct(build.get('care_fraction'))}</td></tr></table>"
            )

    s = (
        np.zeros(reference.image.shape[:2], np.float32)
        if spread is None
        else (spread.max(axis=2) if spread.ndim == 3 else spread)
    )
    mask = reference.care_mask if reference.care_mask is not None else np.full(reference.image.shape[:2], 255, np.uint8)
    parts.append("<h2>Reference</h2><div class='grid'>")
    parts.append(_figure(_img(out, "reference.png", reference.image), "reference (center of the aligned good frames)"))
    parts.append(
        _figure(
            _img(out, "variation.png", heatmap(s, vmin=0.0)),
            f"variation (per-pixel spread, 0 to {float(s.max()):.1f} gray levels; red = varies between good parts)",
        )
    )
    masked = reference.image.copy()
    masked[mask == 0] = (masked[mask == 0] * 0.3).astype(np.uint8)
    parts.append(_figure(_img(out, "mask.png", masked), "care mask (dimmed = not inspected)"))
    parts.append("</div>")

    parts.append(
        "<h2>Threshold search</h2><table><tr><th>k</th><th>abs threshold</th><th>false-alarm rate</th>"
        "<th>detection rate</th><th>mean tolerance</th></tr>"
    )
    for g in result.grid:
        cls = " class='chosen'" if result.tightest is not None and g.key == result.tightest.key else ""
        parts.append(
            f"<tr{cls}><td>{g.k}</td><td>{g.abs_threshold}</td><td>{_pct(g.false_alarm_rate)}</td>"
            f"<td>{_pct(g.detection_rate)}</td><td>{g.tolerance:.1f}</td></tr>"
        )
    parts.append("</table>")
    if chosen is not None and result.tightest is not None:
        parts.append(
            f"<p>Highlighted: the tightest setting meeting the false-alarm target. Used: k={chosen.k}, "
            f"abs={chosen.abs_threshold} (x{result.config.margin} safety margin): false alarms "
            f"{_pct(chosen.false_alarm_rate)}, detection {_pct(chosen.detection_rate)}.</p>"
        )

    parts.append(
        f"<h2>Held-out frames at k={k}, abs={abs_t}</h2>"
        "<p>Heat map: the golden engine's deviation from the reference divided by its tolerance at this setting "
        "(lighting normalized, edges tolerated; red = at or above the threshold; isolated specks "
        "do not alarm, so only red blobs do). "
        "Red box: detection, green box: known defect.</p><div class='grid'>"
    )
    # The frames that failed the candidate come first, always; then defects, then good frames.
    failing = set(
        result.failing_frames()["false_alarms"]
        + result.failing_frames()["missed"]
        + result.failing_frames()["alignment_failures"]
    )
    ordered = sorted(result.samples, key=lambda r: (r.sample.name not in failing, r.sample.gt is None, r.align_ok))
    cap = max(result.config.max_report_frames, len(failing))
    shown, hidden = ordered[:cap], ordered[cap:]
    if failing:
        parts.append(
            "<p class='bad'>Frames that count against this candidate (shown first): "
            + ", ".join(html.escape(n) for n in sorted(failing))
            + "</p>"
        )
    for i, r in enumerate(shown):
        name = html.escape(r.sample.name)
        if not r.align_ok or r.aligned is None:
            src = _img(out, f"frame_{i:03d}_raw.png", r.sample.image)
            parts.append(
                _figure(
                    src,
                    f"<b>{name}</b> ({r.sample.kind}) <span class='bad'>alignment failed: "
                    f"{html.escape(r.align_reason or '')}</span>",
                )
            )
            continue
        det = r.outcomes.get((k, abs_t))
        ratio = residual_map(reference, r.aligned, k, abs_t, result.config.golden, r.valid)
        heat = overlay_heatmap(r.aligned, ratio, alpha=0.5, vmin=0.0, vmax=1.5)
        boxes = draw_boxes(
            r.aligned,
            det.box if det is not None and det.anomaly else None,
            r.gt_ref,
            label="alarm" if det is not None and det.anomaly else "",
            score=None if det is None else det.score,
        )
        if r.sample.gt is None:
            verdict = (
                "<span class='bad'>false alarm</span>" if r.alarm((k, abs_t)) else "<span class='ok'>no alarm</span>"
            )
        else:
            verdict = (
                "<span class='ok'>found</span>"
                if r.found((k, abs_t), result.config.iou)
                else "<span class='bad'>missed</span>"
            )
        parts.append(
            _figure(_img(out, f"frame_{i:03d}_residual.png", heat), f"<b>{name}</b> ({r.sample.kind}) residual")
        )
        parts.append(_figure(_img(out, f"frame_{i:03d}_detections.png", boxes), f"<b>{name}</b> detections: {verdict}"))
    parts.append("</div>")
    if hidden:
        parts.append(
            f"<p class='notshown'>{len(hidden)} frames not shown (all passed; the report shows at most "
            f"{result.config.max_report_frames}): " + ", ".join(html.escape(r.sample.name) for r in hidden) + "</p>"
        )
    parts.append("</body></html>")
    path = out / "index.html"
    atomic_write_text(path, "\n".join(parts))
    return path
