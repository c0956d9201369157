"""The per-worker cache: values live for their TTL, memory holds only the recent working set."""

from __future__ import annotations

import pytest

from ecard.store.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_served_until_its_ttl_then_forgotten() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, limit=100, clock=clock)
    cache.put("a", 1)
    clock.now += 9.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_rewriting_a_key_renews_it_and_pop_forgets_it() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, limit=100, clock=clock)
    cache.put("a", 1)
    clock.now += 8
    cache.put("a", 2)
    clock.now += 8
    assert cache.get("a") == 2
    cache.pop("a")
    cache.pop("never there")
    assert cache.get("a") is None


def test_memory_holds_the_last_ttl_of_keys_not_every_key_ever_seen() -> None:
    """A steady stream of new keys (a new holder every 10 ms) stays at one TTL's worth."""
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(1.0, limit=1_000_000, clock=clock)
    for key in range(10_000):
        cache.put(key, key)
        clock.now += 0.01
    assert len(cache) <= 101
    assert cache.get(9_999) == 9_999 and cache.get(0) is None


def test_the_bound_holds_even_when_nothing_has_expired() -> None:
    cache: TtlCache[int, int] = TtlCache(3600, limit=50, clock=Clock())
    for key in range(1_000):
        cache.put(key, key)
    assert len(cache) == 50
    assert cache.get(999) == 999 and cache.get(949) is None


@pytest.mark.parametrize(("ttl", "limit"), [(0, 10), (-1, 10), (1, 0)])
def test_nonsense_settings_are_refused(ttl: float, limit: int) -> None:
    with pytest.raises(ValueError):
        TtlCache(ttl, limit)
