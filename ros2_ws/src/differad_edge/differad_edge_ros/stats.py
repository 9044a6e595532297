"""Counters, rates and latency percentiles for the node's ``/diagnostics`` (thread-safe, pure)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StatsSnapshot:
    frames_in: int
    processed: int
    dropped: int
    bad_frames: int
    engine_errors: int
    anomalies: int
    invalid: int
    input_rate_hz: float
    processed_rate_hz: float
    latency_p50_ms: float
    latency_p95_ms: float
    inspect_p50_ms: float
    last_error: str


class NodeStats:
    """What the node reports: totals since start, rates since the previous snapshot, recent latencies."""

    def __init__(self, latency_window: int = 300, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._inspect: deque[float] = deque(maxlen=latency_window)
        self.frames_in = self.processed = self.dropped = self.bad_frames = self.engine_errors = self.anomalies = self.invalid = 0
        self.last_error = ""
        self._mark = (clock(), 0, 0)

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def frame_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def bad_frame(self, reason: str) -> None:
        with self._lock:
            self.bad_frames += 1
            self.last_error = reason

    def engine_error(self, reason: str) -> None:
        with self._lock:
            self.engine_errors += 1
            self.last_error = reason

    def done(self, latency_ms: float, anomaly: bool, valid: bool = True, inspect_ms: float | None = None) -> None:
        """A published result. ``latency_ms``: frame received -> result published; ``inspect_ms``: the
        inspector's share of it; ``valid=False``: not inspected (e.g. the frame could not be aligned)."""
        with self._lock:
            if inspect_ms is not None:
                self._inspect.append(inspect_ms)
            self.processed += 1
            self.anomalies += int(anomaly)
            self.invalid += int(not valid)
            self._latencies.append(latency_ms)

    def snapshot(self) -> StatsSnapshot:
        """Totals, rates over the time since the last snapshot, p50/p95 over the latency window."""
        with self._lock:
            now = self._clock()
            t0, in0, done0 = self._mark
            dt = max(now - t0, 1e-9)
            self._mark = (now, self.frames_in, self.processed)
            lat = np.asarray(self._latencies, dtype=np.float64)
            p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat.size else (0.0, 0.0)
            inspect_p50 = float(np.median(np.asarray(self._inspect))) if self._inspect else 0.0
            return StatsSnapshot(
                frames_in=self.frames_in,
                processed=self.processed,
                dropped=self.dropped,
                bad_frames=self.bad_frames,
                engine_errors=self.engine_errors,
                anomalies=self.anomalies,
                invalid=self.invalid,
                input_rate_hz=(self.frames_in - in0) / dt,
                processed_rate_hz=(self.processed - done0) / dt,
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                inspect_p50_ms=inspect_p50,
                last_error=self.last_error,
            )
