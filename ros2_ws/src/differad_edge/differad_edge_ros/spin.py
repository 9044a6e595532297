"""How every process of this package spins: rclpy's C++ events executor where rclpy has it.

rclpy's default executor rebuilds its wait set in Python around every callback, which costs about
0.3-0.6 ms of the GIL per message on a small CPU, once in the node and again in each subscriber. The
events executor (``rclpy.experimental``, rclpy >= 9 / Kilted) dispatches from C++ and releases the
GIL while waiting. Its ``spin()`` in rclpy 9.1 neither runs timers nor returns on shutdown, so
:func:`spin_until_shutdown` loops on ``spin_once``, which does both.
"""

from __future__ import annotations

import threading
from typing import Any

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

RCLError = _rclpy.RCLError

EXECUTORS = ("events", "single_threaded")


def events_executor_available() -> bool:
    try:
        from rclpy.experimental import EventsExecutor  # noqa: F401
    except ImportError:  # rclpy < 9 (Jazzy)
        return False
    return True


def make_executor(kind: str = "events", *nodes: Any) -> Executor:
    """An executor with ``nodes`` added; ``events`` falls back to single-threaded on an rclpy without it."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor {kind!r} is not supported; expected one of: {', '.join(EXECUTORS)}")
    if kind == "events" and events_executor_available():
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor()
    else:
        executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    return executor


def spin_until_shutdown(executor: Executor, period: float = 0.2, stop: threading.Event | None = None) -> None:
    """Run callbacks until the context shuts down (SIGINT/SIGTERM through rclpy's handlers, or
    ``rclpy.shutdown``), or until ``stop`` is set (a process that spins on a background thread). The
    events executor raises ExternalShutdownException on a shutdown; the single-threaded one may raise
    RCLError when the shutdown lands between ``ok()`` and its wait, which is a shutdown too, not an error."""
    while rclpy.ok() and not (stop is not None and stop.is_set()):
        try:
            executor.spin_once(timeout_sec=period)
        except RCLError:
            if rclpy.ok():
                raise
            return
