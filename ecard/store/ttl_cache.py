"""A worker's cache of recent values: each for a fixed time, never more than a bound.

Entries leave in the order they were written (every entry lives equally long, so the oldest
write expires first): writing purges the expired head, so memory holds the working set of the
last ``ttl`` seconds, not every key ever seen (clearing the whole cache at a bound made memory
grow to the bound under load, then drop).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl: float, limit: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (ttl > 0 and limit >= 1):
            raise ValueError("a TtlCache needs ttl > 0 and limit >= 1")
        self._ttl, self._limit, self._clock = ttl, limit, clock
        # an OrderedDict, not a dict: a dict that is written at the end and emptied from the front
        # leaves holes that every look at its first entry walks over
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        self._entries[key] = (now + self._ttl, value)
        self._entries.move_to_end(key)  # a rewrite moves to the end: order stays expiry order
        for _ in range(2):  # two out per write: the expired head shrinks faster than it grows
            expires_at = next(iter(self._entries.values()))[0]
            if expires_at > now and len(self._entries) <= self._limit:
                break
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)
