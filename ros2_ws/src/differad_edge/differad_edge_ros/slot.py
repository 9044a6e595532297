"""A small keep-latest queue: the camera never waits for inference, stale frames are dropped."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds the ``depth`` newest items; ``put`` on a full queue drops the oldest and counts it.

    The executor thread puts, the worker thread takes them oldest first. Depth 1 is a pure
    keep-latest slot; depth 2 (the node's default) also absorbs one inspection that runs over a
    frame period, which a single slot turns into a dropped frame, while a slow engine still runs on
    recent frames instead of building a backlog of old ones.
    """

    def __init__(self, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"depth={depth}: expected an integer >= 1")
        self._cond = threading.Condition()
        self._items: deque[T] = deque()
        self._depth = int(depth)
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; True when the queue was full and its oldest item was dropped."""
        with self._cond:
            full = len(self._items) >= self._depth
            if full:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return full

    def take(self, timeout: float | None = None) -> T | None:
        """The oldest item held, waiting up to ``timeout`` s; None on timeout or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._closed or not self._items:
                return None
            return self._items.popleft()

    def close(self) -> None:
        """Wake the worker for shutdown; later ``take`` calls return None."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
