"""The field station: one web app for calibration at the cell (``differad-station``).

Why FastAPI/Starlette + Jinja2 pages + htmx: a kept, typed ASGI stack served by uvicorn, pages
rendered on the server (no build step, no JavaScript framework to maintain at the station) and
htmx (vendored, 0BSD) for the few live parts: the live view polls, exclude/re-include swap one
card. The only hand-written script is the care-mask canvas (``static/mask.js``).

Every action calls the functions ``differad-calibrate`` uses (``session.capture``,
``build.build_candidate``, ``commands.run_validation`` / ``promote`` / ``rollback`` / ``show``,
``masks.load_care_mask``): the rules (gates, audit trail, what may go live) live there, once.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from differad_edge.errors import CalibrationError, DifferadError
from differad_edge.fileio import atomic_write_text
from differad_edge.images import encode_image
from differad_edge.store import ID_PATTERN, ReferenceStore

from .. import commands
from ..build import build_candidate
from ..config import BuildConfig, CalibrationConfig, make_config
from ..gates import LiveGates, short_reason
from ..masks import load_care_mask
from ..session import SESSION_FILE, Session, capture, load_session
from ..sources import Frame, describe_source, iter_frames

HERE = Path(__file__).parent
TOKEN_COOKIE = "differad_station_token"
MASK_FILE = "care_mask.yaml"


@dataclass
class StationSettings:
    """What one station serves: its reference store, a work folder for sessions, the token."""

    store: Path
    workdir: Path
    token: str | None = None
    config: CalibrationConfig = field(default_factory=CalibrationConfig)
    engine: str = "golden"
    source_timeout_s: float = 5.0
    poll_ms: int = 700  # how often the live view asks for the next frame
    trigger_topic: str | None = None  # ROS topic (std_msgs/Empty) whose messages capture the live frame


class LiveCapture:
    """A source being watched: the newest frame with its live gate verdict, and the frames captured."""

    def __init__(self, product_id: str, source: str, settings: StationSettings) -> None:
        from differad_edge.store import validate_id

        self.product_id = validate_id(product_id, "product id")
        self.source = source
        self._frames = iter_frames(source, timeout_s=settings.source_timeout_s)
        self.gates = LiveGates(settings.config.gates)
        self.current: Frame | None = None
        self.verdict: Any = None
        self.captured: list[Frame] = []
        self.seen = 0
        self.auto = False
        self.ended = False
        # a camera or topic streams on its own; a folder / video / bag waits for "next" or "capture every frame"
        self.streaming = describe_source(source) in ("camera", "ros")
        self.lock = threading.RLock()
        self.tick()  # an unreadable source fails here, on "start", with its message
        self.trigger: Any = None
        if settings.trigger_topic:
            from .trigger import RosTrigger

            self.trigger = RosTrigger(settings.trigger_topic, self.triggered)

    def triggered(self) -> None:
        """A ROS trigger: the newest frame of a stream, or the next one of a file source, is captured."""
        with self.lock:
            if not self.streaming:
                self.tick()
            self.capture_current()

    def poll(self) -> None:
        """What the live view's poll does: the next frame of a stream, or of a file source while capturing all."""
        if self.streaming or self.auto:
            self.tick()

    def tick(self) -> None:
        with self.lock:
            if self.ended:
                return
            try:
                frame = next(self._frames)
            except StopIteration:
                self.ended = True
                return
            self.current, self.seen = frame, self.seen + 1
            self.verdict = self.gates.add(frame.name, frame.image)
            if self.auto:
                self.captured.append(frame)

    def close(self) -> None:
        """Release the source (a camera, a ROS node) when the view is left or replaced."""
        with self.lock:
            self.ended = True
            self._frames.close()
        if self.trigger is not None:
            self.trigger.close()

    def capture_current(self) -> None:
        with self.lock:
            if self.current is not None and all(f.name != self.current.name for f in self.captured):
                self.captured.append(self.current)


def _data_url(rgb: np.ndarray, side: int = 480) -> str:
    scale = min(1.0, side / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return "data:image/jpeg;base64," + base64.b64encode(encode_image(rgb, ".jpg")).decode("ascii")


def _safe_id(value: str, what: str) -> str:
    if not ID_PATTERN.fullmatch(value or ""):
        raise CalibrationError(f"invalid {what} {value!r}")
    return value


def create_app(settings: StationSettings) -> FastAPI:
    """The station app; ``settings.token`` set: every request must carry it (header, cookie or ?token=)."""
    app = FastAPI(title="DifferAD field station", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    store = ReferenceStore(settings.store)
    sessions_root = settings.workdir / "sessions"
    state: dict[str, Any] = {"live": None, "operator": ""}
    app.state.settings = settings

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if settings.token is None:
            return await call_next(request)
        given = (
            request.headers.get("x-station-token")
            or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            or request.cookies.get(TOKEN_COOKIE)
            or request.query_params.get("token")
            or ""
        )
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            return HTMLResponse("<h1>401</h1><p>This station needs its token: open it as /?token=TOKEN.</p>", 401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(DifferadError)
    async def differad_error(request: Request, exc: DifferadError) -> Response:
        if request.headers.get("hx-request"):
            return HTMLResponse(f"<div class='error' role='alert'>{_esc(str(exc))}</div>", 200)
        return page(request, "error.html", {"message": str(exc)}, status=400)

    def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        base = {
            "request": request,
            "operator": state["operator"],
            "live": state["live"],
            "msg": request.query_params.get("msg"),
            "poll_ms": settings.poll_ms,
        }
        return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)

    def operator(name: str) -> str:
        resolved = commands.resolve_operator(name or None)
        assert resolved is not None
        state["operator"] = resolved
        return resolved

    def session_dir(sid: str) -> Path:
        path = sessions_root / _safe_id(sid, "session")
        if not (path / SESSION_FILE).is_file():
            raise CalibrationError(f"no session {sid!r} in {sessions_root}")
        return path

    def sessions(product: str | None = None) -> list[Session]:
        if not sessions_root.is_dir():
            return []
        out = []
        for p in sorted(sessions_root.iterdir(), reverse=True):
            if (p / SESSION_FILE).is_file() and ID_PATTERN.fullmatch(p.name):
                try:
                    s = load_session(p)
                except DifferadError:
                    continue
                if product is None or s.product_id == product:
                    out.append(s)
        return out

    def go(url: str, msg: str | None = None) -> RedirectResponse:
        from urllib.parse import quote

        return RedirectResponse(url + (f"?msg={quote(msg)}" if msg else ""), status_code=303)

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- home ---------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        return page(request, "home.html", {"products": store.products(), "sessions": sessions()})

    # -- live view and capture ----------------------------------------------------------------
    @app.post("/live/start")
    def live_start(product: str = Form(...), source: str = Form(...)) -> Response:
        new = LiveCapture(product.strip(), source.strip(), settings)
        if state["live"] is not None:
            state["live"].close()
        state["live"] = new
        return go("/live")

    @app.get("/live", response_class=HTMLResponse)
    def live_page(request: Request) -> Response:
        if state["live"] is None:
            return go("/", "start a source first")
        return page(request, "live.html", {"cap": state["live"]})

    def live_panel(request: Request) -> Response:
        cap: LiveCapture = state["live"]
        image = _data_url(cap.current.image) if cap.current is not None else None
        verdict = cap.verdict.to_json() if cap.verdict is not None else None
        return page(
            request,
            "_live_panel.html",
            {"cap": cap, "image": image, "verdict": verdict, "why": short_reason(cap.verdict) if cap.verdict else ""},
        )

    @app.get("/live/tick", response_class=HTMLResponse)
    def live_tick(request: Request, advance: int = 1) -> Response:
        if state["live"] is None:
            return HTMLResponse("<p>no source</p>")
        if advance:
            state["live"].poll()
        return live_panel(request)

    @app.post("/live/next", response_class=HTMLResponse)
    def live_next(request: Request) -> Response:
        state["live"].tick()
        return live_panel(request)

    @app.post("/live/capture", response_class=HTMLResponse)
    def live_capture(request: Request) -> Response:
        state["live"].capture_current()
        return live_panel(request)

    @app.post("/live/auto", response_class=HTMLResponse)
    def live_auto(request: Request) -> Response:
        cap: LiveCapture = state["live"]
        cap.auto = not cap.auto
        if cap.auto:
            cap.capture_current()
        return live_panel(request)

    @app.post("/live/finish")
    def live_finish(holdout: float = Form(0.25)) -> Response:
        cap: LiveCapture | None = state["live"]
        if cap is None or not cap.captured:
            raise CalibrationError("nothing captured yet; capture frames in the live view first")
        sid = f"{cap.product_id}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        session = capture(
            cap.product_id,
            cap.source,
            None,
            sessions_root / sid,
            holdout=holdout,
            gates=settings.config.gates,
            frames=list(cap.captured),
        )
        cap.close()
        state["live"] = None
        accepted = sum(f.accepted for f in session.frames)
        return go(f"/session/{sid}", f"captured {len(session.frames)} frames, {accepted} accepted")

    # -- session: thumbnails, exclude, care mask, build ---------------------------------------
    @app.get("/session/{sid}", response_class=HTMLResponse)
    def session_page(request: Request, sid: str) -> Response:
        session = load_session(session_dir(sid))
        return page(
            request, "session.html", {"s": session, "sid": sid, "has_mask": (session.root / MASK_FILE).is_file()}
        )

    @app.get("/session/{sid}/frame/{index}")
    def session_frame(sid: str, index: int) -> Response:
        session = load_session(session_dir(sid))
        if not 0 <= index < len(session.frames):
            raise CalibrationError(f"session {sid} has no frame {index}")
        session.load_images([session.frames[index]])  # refuses a frame whose bytes changed since capture
        return FileResponse(session.root / session.frames[index].file, media_type="image/png")

    @app.post("/session/{sid}/exclude/{index}", response_class=HTMLResponse)
    def session_exclude(request: Request, sid: str, index: int, excluded: int = Form(...)) -> Response:
        session = load_session(session_dir(sid))
        if not 0 <= index < len(session.frames):
            raise CalibrationError(f"session {sid} has no frame {index}")
        frame = session.set_excluded(session.frames[index].name, bool(excluded))
        return page(request, "_frame_card.html", {"f": frame, "i": index, "sid": sid})

    def anchor_index(session: Session) -> int:
        name = session.gates.get("anchor")
        return next((i for i, f in enumerate(session.frames) if f.name == name), 0)

    @app.get("/session/{sid}/mask", response_class=HTMLResponse)
    def mask_page(request: Request, sid: str) -> Response:
        session = load_session(session_dir(sid))
        i = anchor_index(session)
        h, w = session.load_images([session.frames[i]])[0].shape[:2]
        path = session.root / MASK_FILE
        polygons = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return page(
            request,
            "mask.html",
            {"s": session, "sid": sid, "anchor": i, "width": w, "height": h, "polygons": polygons or {}},
        )

    @app.post("/session/{sid}/mask")
    async def mask_save(request: Request, sid: str) -> Response:
        session = load_session(session_dir(sid))
        data = await request.json()
        if not isinstance(data, dict) or not set(data) <= {"care", "ignore"}:
            raise CalibrationError("a care mask is {'care': [polygons], 'ignore': [polygons]}")
        clean = {
            k: [[[round(float(x), 1), round(float(y), 1)] for x, y in poly] for poly in v or []]
            for k, v in data.items()
            if v
        }
        image = session.load_images([session.frames[anchor_index(session)]])[0]
        h, w = image.shape[:2]
        tmp = session.root / f".{MASK_FILE}.check.yaml"
        atomic_write_text(tmp, yaml.safe_dump(clean, default_flow_style=None, sort_keys=True))
        try:
            mask = load_care_mask(tmp, (w, h))  # the one reader of polygon masks checks it
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_text(session.root / MASK_FILE, yaml.safe_dump(clean, default_flow_style=None, sort_keys=True))
        preview = image.copy()
        preview[mask == 0] = (preview[mask == 0] * 0.3).astype(np.uint8)
        return JSONResponse(
            {
                "saved": str(session.root / MASK_FILE),
                "care_fraction": float((mask > 0).mean()),
                "preview": _data_url(preview, 640),
            }
        )

    @app.post("/session/{sid}/build")
    def session_build(sid: str, auto_mask: str = Form(""), operator_name: str = Form("", alias="operator")) -> Response:
        session = load_session(session_dir(sid))
        who = commands.resolve_operator(operator_name or None, required=False)
        if who:
            state["operator"] = who
        mask = session.root / MASK_FILE
        build = make_config(
            BuildConfig,
            {
                **settings.config.build.model_dump(),
                "auto_mask": {**settings.config.build.auto_mask.model_dump(), "enabled": bool(auto_mask)},
            },
            "build options",
        )
        version = build_candidate(
            store, session, config=build, care_mask=mask if mask.is_file() else None, operator=who
        )
        return go(f"/product/{session.product_id}", f"built candidate {version} from session {sid}; validate it next")

    # -- product: validate, report, promote, rollback, history, spot check --------------------
    @app.get("/product/{product}", response_class=HTMLResponse)
    def product_page(request: Request, product: str, version: str | None = None) -> Response:
        rows = commands.list_products(store, _safe_id(product, "product id"))
        shown = commands.show(store, product, version)
        return page(
            request,
            "product.html",
            {
                "product": product,
                "rows": rows,
                "summary": commands.summary_lines(shown),
                "shown": shown,
                "history": store.history(product)[::-1],
                "sessions": sessions(product),
                "candidates": [r["version"] for r in rows if r["status"] == "candidate"],
                "target": commands.rollback_target(store, product),
            },
        )

    @app.post("/product/{product}/validate")
    def product_validate(
        product: str,
        version: str = Form(...),
        session_id: str = Form(..., alias="session"),
        operator_name: str = Form("", alias="operator"),
    ) -> Response:
        who = operator(operator_name)
        session = load_session(session_dir(session_id))
        report_dir = commands.new_report_dir(session.root / "reports", product, version)
        result = commands.run_validation(
            store,
            product,
            version,
            session=session,
            config=settings.config.validate_,
            report_dir=report_dir,
            operator=who,
        )
        failing = result.failing_frames()
        names = ", ".join(failing["false_alarms"] + failing["missed"] + failing["alignment_failures"])
        msg = f"{product}/{version} {'PASSED' if result.passed else 'FAILED'}" + (
            f"; failing frames: {names}" if names else ""
        )
        return go(f"/product/{product}", msg)

    @app.get("/report/{sid}/{report}/{name:path}")
    def report_file(sid: str, report: str, name: str) -> Response:
        root = (session_dir(sid) / "reports" / _safe_id(report, "report")).resolve()
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file():
            raise CalibrationError(f"no report file {name!r}")
        return FileResponse(path)

    @app.post("/product/{product}/promote")
    def product_promote(
        product: str,
        version: str = Form(...),
        force: str = Form(""),
        reason: str = Form(""),
        operator_name: str = Form("", alias="operator"),
    ) -> Response:
        commands.promote(
            store, product, version, force=bool(force), reason=reason or None, operator=operator(operator_name)
        )
        return go(f"/product/{product}", f"{product}: active version is now {version}{' (forced)' if force else ''}")

    @app.post("/product/{product}/rollback")
    def product_rollback(
        product: str, force: str = Form(""), reason: str = Form(""), operator_name: str = Form("", alias="operator")
    ) -> Response:
        version = commands.rollback(
            store, product, force=bool(force), reason=reason or None, operator=operator(operator_name)
        )
        return go(f"/product/{product}", f"{product}: rolled back, active version is now {version}")

    @app.get("/product/{product}/spot", response_class=HTMLResponse)
    def spot_check(request: Request, product: str, version: str | None = None, step: int = 0) -> Response:
        """A live frame inspected with the candidate and with the active version, side by side."""
        from differad_edge.inspector import Inspector

        cap: LiveCapture | None = state["live"]
        if cap is None or cap.current is None:
            raise CalibrationError("start a live source first (the spot check inspects its newest frame)")
        cap.tick() if step else cap.poll()
        frame = cap.current
        assert frame is not None
        rows = commands.list_products(store, product)
        candidate = version or next((r["version"] for r in reversed(rows) if not r["active"]), None)
        inspector = Inspector(settings.engine, store)
        try:
            sides = []
            for label, v in (("candidate", candidate), ("active", None)):
                result = inspector.inspect(frame.image, product, v)
                sides.append(
                    {
                        "label": label,
                        "version": result.reference_version or v or "-",
                        "verdict": result.verdict.value,
                        "reason": result.detection.message,
                        "image": _data_url(_draw(frame.image, result)),
                        "defects": len(result.detection.defects),
                    }
                )
        finally:
            inspector.close()
        return page(
            request, "spot.html", {"product": product, "frame": frame.name, "sides": sides, "version": candidate}
        )

    return app


def _draw(rgb: np.ndarray, inspection: Any) -> np.ndarray:
    out = rgb.copy()
    for d in inspection.detection.defects:
        b = d.box
        cv2.rectangle(out, (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2)), (230, 30, 30), 2)
    return out


def _esc(text: str) -> str:
    import html

    return html.escape(text)
