"""Counters, windowed rates, frame-loss detection and the health level of the node's ``/diagnostics``.

Thread-safe and pure (no rclpy). Totals count since start; the level and the rates look at a
sliding window of the last ``window`` seconds only, so one bad frame minutes ago does not keep the
node at WARN forever (which teaches people to ignore it), and a camera below 1 fps still shows its
real rate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels

#: Events that make the window unhealthy (WARN) while any is in it.
PROBLEMS = ("not_inspected", "bad", "dropped", "lost")


@dataclass(frozen=True)
class StatsSnapshot:
    frames_in: int
    processed: int
    dropped: int
    bad_frames: int
    engine_errors: int
    anomalies: int
    invalid: int
    lost: int
    input_rate_hz: float
    processed_rate_hz: float
    latency_p50_ms: float
    latency_p95_ms: float
    inspect_p50_ms: float
    last_error: str
    window: dict[str, int]  # event -> count within the window
    window_s: float
    level: int
    message: str


class NodeStats:
    """What the node reports: totals since start, counts and rates over the last ``window`` s,
    recent latencies, and the health level decided from them."""

    def __init__(
        self,
        latency_window: int = 300,
        clock=time.monotonic,
        window: float = 10.0,
        frame_timeout: float = 0.0,
        expected_rate: float = 0.0,
        engine_error_limit: int = 3,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._inspect: deque[float] = deque(maxlen=latency_window)
        self._events: deque[tuple[float, str]] = deque()
        self.window = float(window)
        self.frame_timeout = float(frame_timeout)
        self.expected_rate = float(expected_rate)
        self.engine_error_limit = int(engine_error_limit)
        self.frames_in = self.processed = self.dropped = self.bad_frames = self.engine_errors = 0
        self.anomalies = self.invalid = self.lost = 0
        self.consecutive_engine_errors = 0
        self.last_error = ""
        self._started = clock()
        self._last_frame: float | None = None
        self._last_stamp_ns: int | None = None

    def restart(self) -> None:
        """Start the no-frame clock again (on activation): an inactive node is not a silent camera."""
        with self._lock:
            self._started = self._clock()
            self._last_frame = None
            self._last_stamp_ns = None

    def _event(self, kind: str, n: int = 1) -> None:
        now = self._clock()
        for _ in range(n):
            self._events.append((now, kind))

    def frame_in(self, stamp_ns: int | None = None) -> int:
        """A frame arrived; with ``stamp_ns`` (its header stamp) and an expected rate, frames the
        camera stamped in between but that never arrived are counted as lost. Returns that number."""
        with self._lock:
            self.frames_in += 1
            self._last_frame = self._clock()
            self._event("in")
            lost = 0
            if stamp_ns is not None and self.expected_rate > 0:
                prev = self._last_stamp_ns
                if prev is not None and stamp_ns > prev:
                    period_ns = 1e9 / self.expected_rate
                    gap = (stamp_ns - prev) / period_ns
                    if gap > 1.5:  # more than half a period late: round to whole missing frames
                        lost = int(round(gap)) - 1
                if prev is None or stamp_ns > prev:
                    self._last_stamp_ns = stamp_ns
            if lost:
                self.lost += lost
                self._event("lost", lost)
            return lost

    def frame_dropped(self) -> None:
        with self._lock:
            self.dropped += 1
            self._event("dropped")

    def bad_frame(self, reason: str) -> None:
        with self._lock:
            self.bad_frames += 1
            self.last_error = reason
            self._event("bad")

    def engine_error(self, reason: str) -> None:
        with self._lock:
            self.engine_errors += 1
            self.consecutive_engine_errors += 1
            self.last_error = reason
            self._event("engine_error")

    def done(
        self,
        latency_ms: float,
        anomaly: bool,
        valid: bool = True,
        inspect_ms: float | None = None,
        engine_failed: bool = False,
        reason: str = "",
    ) -> None:
        """A published result. ``latency_ms``: frame received -> result published; ``inspect_ms``: the
        inspector's share of it; ``valid=False``: not inspected (``reason`` says why);
        ``engine_failed``: the engine raised on it (counts towards ERROR when repeated)."""
        with self._lock:
            if inspect_ms is not None:
                self._inspect.append(inspect_ms)
            self.processed += 1
            self.anomalies += int(anomaly)
            self.invalid += int(not valid)
            self._latencies.append(latency_ms)
            self._event("processed")
            if not valid:
                self._event("not_inspected")
                if reason:
                    self.last_error = reason
            if engine_failed:
                self.engine_errors += 1
                self.consecutive_engine_errors += 1
                self._event("engine_error")
            elif valid:
                self.consecutive_engine_errors = 0

    def snapshot(self) -> StatsSnapshot:
        """Totals, windowed counts and rates, p50/p95 over the latency window, and the level."""
        with self._lock:
            now = self._clock()
            while self._events and self._events[0][0] < now - self.window:
                self._events.popleft()
            counts: dict[str, int] = {}
            for _, kind in self._events:
                counts[kind] = counts.get(kind, 0) + 1
            span = max(min(self.window, now - self._started), 1e-9)
            lat = np.asarray(self._latencies, dtype=np.float64)
            p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat.size else (0.0, 0.0)
            inspect_p50 = float(np.median(np.asarray(self._inspect))) if self._inspect else 0.0
            level, message = self._level(now, counts)
            return StatsSnapshot(
                frames_in=self.frames_in,
                processed=self.processed,
                dropped=self.dropped,
                bad_frames=self.bad_frames,
                engine_errors=self.engine_errors,
                anomalies=self.anomalies,
                invalid=self.invalid,
                lost=self.lost,
                input_rate_hz=counts.get("in", 0) / span,
                processed_rate_hz=counts.get("processed", 0) / span,
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                inspect_p50_ms=inspect_p50,
                last_error=self.last_error,
                window={k: counts.get(k, 0) for k in ("in", "processed", *PROBLEMS, "engine_error")},
                window_s=self.window,
                level=level,
                message=message,
            )

    def _level(self, now: float, counts: dict[str, int]) -> tuple[int, str]:
        if self.consecutive_engine_errors >= self.engine_error_limit:
            return ERROR, (f"engine failed on {self.consecutive_engine_errors} frames in a row: {self.last_error}")
        if self.frame_timeout > 0:
            since = now - (self._last_frame if self._last_frame is not None else self._started)
            if since > self.frame_timeout:
                what = "no frame since start" if self._last_frame is None else "no frame"
                return ERROR, f"{what} for {since:.1f} s (frame_timeout {self.frame_timeout:g} s): camera stopped?"
        problems = {k: counts.get(k, 0) for k in PROBLEMS if counts.get(k, 0)}
        if problems:
            listed = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in problems.items())
            detail = f": {self.last_error}" if self.last_error and (problems.keys() & {"bad", "not_inspected"}) else ""
            return WARN, f"in the last {self.window:g} s: {listed}{detail}"
        return OK, "ok"
