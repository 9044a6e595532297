"""One small least-recently-used map, for the few places that keep prepared state per reference.

An inspection cell switches between a handful of products: the inspector's ad-hoc references, the
evaluation CLI's decoded references and the language-model engines' reference prefixes all keep
the last few and drop the one used longest ago. ``functools.lru_cache`` does not fit them: the
keys are content hashes computed by the caller, values are built lazily from objects that are not
hashable, and callers count hits or clear the cache on ``close``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``capacity`` entries; a read or write makes an entry the most recent.

    >>> cache: LRU[str, int] = LRU(2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a")
    1
    >>> cache.put("c", 3)  # "b" was used longest ago
    >>> sorted(cache.keys()), cache.get("b") is None
    (['a', 'c'], True)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry (now the most recent), or ``None``."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recent entry; drop the oldest beyond ``capacity``."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The entry for ``key``, made by ``make()`` and stored when absent."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def keys(self) -> list[K]:
        """Keys, oldest first."""
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["LRU"]
