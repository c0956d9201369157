"""The ephemeral store behaves the same in memory, on a single Redis and on a Redis Cluster: one
suite, three backends (a cluster: scripts/start_redis_cluster.sh, ECARD_TEST_REDIS_CLUSTER_URL)."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from ecard.store.ephemeral import (
    _GROUP_TAGS,
    GROUPS,
    MAX_KEY_LENGTH,
    Consumption,
    EphemeralStore,
    InvalidStoreArgument,
    MemoryStore,
    RedisStore,
    Revocation,
    StoreUnavailable,
    _connect,
    _group,
    open_store,
)

SHARED = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.redis_cluster),
]
BACKENDS = ["memory", *SHARED]
URL_FIXTURES = {"redis": "redis_url", "cluster": "redis_cluster_url"}


def backend_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    return request.getfixturevalue(URL_FIXTURES[backend]) if backend in URL_FIXTURES else None


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None selects the memory store; otherwise the test Redis (db 15) or the test cluster."""
    return backend_url(request, request.param)


@pytest.fixture(params=SHARED)
def redis_url_any(request: pytest.FixtureRequest) -> str:
    """A single Redis, then a Redis Cluster: what the shared store must do on both."""
    url = backend_url(request, request.param)
    assert url is not None
    return url


@pytest.fixture()
def prefix() -> Iterator[str]:
    yield f"ecard-test:{uuid.uuid4().hex[:12]}:"


async def _delete_prefix(redis_url: str, prefix: str) -> None:
    """Empty only this test's keys (db 15 and the cluster may be shared with other suites), on
    every primary of a cluster."""
    client = _connect(redis_url, 2.0)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture()
async def store(store_url: str | None, prefix: str) -> AsyncIterator[EphemeralStore]:
    opened = open_store(store_url, prefix)
    yield opened
    await opened.close()
    if store_url:
        await _delete_prefix(store_url, prefix)


async def emptied(store: EphemeralStore, store_url: str | None, prefix: str) -> EphemeralStore:
    """The store after its contents are lost: a flushed Redis, or a restarted process's memory."""
    await asyncio.sleep(0.01)  # the new start is strictly later than anything issued before
    if store_url:
        await _delete_prefix(store_url, prefix)
        return store
    return open_store(None, prefix)


# --- basic operations -------------------------------------------------------------------------


async def test_put_get_overwrite_and_delete(store: EphemeralStore) -> None:
    assert await store.get("session") is None
    await store.put("session", b"pending", ttl=30)
    assert await store.get("session") == b"pending"
    await store.put("session", b"approved", ttl=30)
    assert await store.get("session") == b"approved"
    assert await store.delete("session") is True
    assert await store.delete("session") is False
    assert await store.get("session") is None


async def test_empty_values_are_stored_not_confused_with_absence(store: EphemeralStore) -> None:
    await store.put("empty", b"", ttl=30)
    assert await store.get("empty") == b""
    assert await store.put_if_absent("empty", b"x", ttl=30) is False
    assert await store.take("empty") == b""


async def test_values_expire_after_their_ttl(store: EphemeralStore) -> None:
    await store.put("short", b"1", ttl=0.05)
    await store.put("long", b"2", ttl=30)
    assert await store.put_if_absent("marker", b"m", ttl=0.05) is True
    await asyncio.sleep(0.2)
    assert await store.get("short") is None
    assert await store.take("short") is None
    assert await store.delete("short") is False
    assert await store.get("long") == b"2"
    assert await store.put_if_absent("marker", b"m", ttl=30) is True, (
        "an expired marker no longer blocks"
    )


async def test_rate_buckets_and_values_do_not_share_keys(store: EphemeralStore) -> None:
    await store.put("k", b"value", ttl=30)
    await store.hit("k", 60, 5)
    assert await store.get("k") == b"value"
    assert (await store.hit("k", 60, 5)).remaining == 3


async def test_open_store_picks_the_backend(redis_url_any: str, prefix: str) -> None:
    memory, shared = open_store(None, prefix), open_store(redis_url_any, prefix)
    assert isinstance(memory, MemoryStore) and isinstance(memory, EphemeralStore)
    assert isinstance(shared, RedisStore) and isinstance(shared, EphemeralStore)
    await shared.ping()
    await memory.ping()
    await shared.close()


# --- single use: put_if_absent, take, consume_once --------------------------------------------


async def test_put_if_absent_has_exactly_one_winner_among_concurrent_callers(
    store: EphemeralStore,
) -> None:
    results = await asyncio.gather(
        *(store.put_if_absent("code:42", str(n).encode(), ttl=30) for n in range(200))
    )
    assert results.count(True) == 1
    assert await store.get("code:42") == str(results.index(True)).encode()


async def test_take_hands_the_value_to_exactly_one_caller(store: EphemeralStore) -> None:
    await store.put("authz-code", b"grant", ttl=30)
    results = await asyncio.gather(*(store.take("authz-code") for _ in range(100)))
    assert results.count(b"grant") == 1
    assert results.count(None) == 99
    assert await store.get("authz-code") is None


async def test_consume_once_accepts_a_code_only_the_first_time(store: EphemeralStore) -> None:
    await store.store_started_at()  # the service marks the store's start before issuing codes
    issued_at = time.time()
    results = await asyncio.gather(
        *(store.consume_once("used:abc", 30, issued_at) for _ in range(50))
    )
    assert Counter(results) == {Consumption.FIRST_USE: 1, Consumption.ALREADY_USED: 49}


async def test_store_started_at_is_stable_while_contents_survive(store: EphemeralStore) -> None:
    first = await store.store_started_at()
    assert first <= time.time()
    await store.put("x", b"1", ttl=30)
    assert await store.store_started_at() == first


async def test_an_emptied_store_never_accepts_a_code_twice(
    store: EphemeralStore, store_url: str | None, prefix: str
) -> None:
    before = await store.store_started_at()
    issued_at = time.time()
    assert await store.consume_once("used:code-1", 30, issued_at) is Consumption.FIRST_USE

    store = await emptied(store, store_url, prefix)

    assert await store.store_started_at() > before
    assert await store.consume_once("used:code-1", 30, issued_at) is Consumption.PREDATES_STORE
    fresh = time.time()
    assert await store.consume_once("used:code-2", 30, fresh) is Consumption.FIRST_USE


# --- check_revocation ------------------------------------------------------------------------


async def test_check_revocation_compares_each_marker_with_the_issue_time(
    store: EphemeralStore,
) -> None:
    await store.store_started_at()  # as the platform does at start-up
    issued_at = time.time()
    keys = ["off:session", "off:card"]
    assert await store.check_revocation(keys, issued_at) is Revocation.NONE, "nothing revoked yet"
    await store.put("off:card", repr(issued_at - 5).encode(), ttl=30)
    assert await store.check_revocation(keys, issued_at) is Revocation.NONE, (
        "revoked before it was issued"
    )
    await store.put("off:session", repr(issued_at).encode(), ttl=30)
    assert await store.check_revocation(keys, issued_at) is Revocation.REVOKED, (
        "the very moment counts"
    )
    assert await store.check_revocation(keys, issued_at + 1) is Revocation.NONE, "issued after it"
    assert await store.check_revocation([], issued_at) is Revocation.NONE


async def test_check_revocation_fails_closed_on_a_garbled_marker(store: EphemeralStore) -> None:
    await store.put("off:x", b"not a time", ttl=30)
    assert await store.check_revocation(["off:x"], time.time() + 3600) is Revocation.REVOKED


async def test_an_emptied_store_sends_what_was_issued_before_to_the_durable_record(
    store: EphemeralStore, store_url: str | None, prefix: str
) -> None:
    """A flush may have lost revocation markers: the caller must ask the database."""
    await store.store_started_at()
    issued_at = time.time()
    assert await store.check_revocation(["off:s"], issued_at) is Revocation.NONE
    store = await emptied(store, store_url, prefix)
    assert await store.check_revocation(["off:s"], issued_at) is Revocation.PREDATES_STORE
    assert await store.check_revocation(["off:s"], time.time()) is Revocation.NONE


async def test_a_revocation_on_one_worker_is_seen_by_another(
    redis_url_any: str, prefix: str
) -> None:
    revoking, checking = open_store(redis_url_any, prefix), open_store(redis_url_any, prefix)
    try:
        await revoking.store_started_at()
        issued_at = time.time()
        assert await checking.check_revocation(["off:s"], issued_at) is Revocation.NONE
        await revoking.put("off:s", repr(time.time()).encode(), ttl=30)
        assert await checking.check_revocation(["off:s"], issued_at) is Revocation.REVOKED
    finally:
        for opened in (revoking, checking):
            await opened.close()
        await _delete_prefix(redis_url_any, prefix)


# --- compare_and_set -------------------------------------------------------------------------


async def test_compare_and_set_moves_state_only_from_the_expected_value(
    store: EphemeralStore,
) -> None:
    assert await store.compare_and_set("login", b"pending", b"approved", ttl=30) is False, (
        "absent key"
    )
    await store.put("login", b"pending", ttl=30)
    assert await store.compare_and_set("login", b"other", b"approved", ttl=30) is False
    assert await store.get("login") == b"pending"
    assert await store.compare_and_set("login", b"pending", b"approved", ttl=30) is True
    assert await store.get("login") == b"approved"


async def test_compare_and_set_answers_a_pending_login_once(store: EphemeralStore) -> None:
    await store.put("login", b"pending", ttl=30)
    answers = [f"approved-by-{n}".encode() for n in range(50)]
    results = await asyncio.gather(
        *(store.compare_and_set("login", b"pending", a, ttl=30) for a in answers)
    )
    assert results.count(True) == 1
    assert await store.get("login") == answers[results.index(True)]


async def test_compare_and_set_applies_the_new_ttl(store: EphemeralStore) -> None:
    await store.put("login", b"pending", ttl=0.1)
    assert await store.compare_and_set("login", b"pending", b"approved", ttl=30)
    await asyncio.sleep(0.2)
    assert await store.get("login") == b"approved"
    assert await store.compare_and_set("login", b"approved", b"done", ttl=0.05)
    await asyncio.sleep(0.2)
    assert await store.get("login") is None


# --- rate limiting ---------------------------------------------------------------------------


async def test_rate_limit_allows_a_burst_then_refuses_with_retry_after(
    store: EphemeralStore,
) -> None:
    decisions = [await store.hit("login:1.2.3.4", window_seconds=60, limit=3) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    refused = await store.hit("login:1.2.3.4", window_seconds=60, limit=3)
    assert not refused.allowed and refused.remaining == 0
    assert 19 < refused.retry_after <= 20, "one hit returns every window/limit seconds"
    again = await store.hit("login:1.2.3.4", window_seconds=60, limit=3)
    assert not again.allowed and again.retry_after <= refused.retry_after, (
        "refusals do not extend the wait"
    )
    other = await store.hit("login:5.6.7.8", window_seconds=60, limit=3)
    assert other.allowed and other.remaining == 2


async def test_rate_limit_allows_again_after_retry_after(store: EphemeralStore) -> None:
    assert (await store.hit("poll", window_seconds=0.2, limit=1)).allowed
    refused = await store.hit("poll", window_seconds=0.2, limit=1)
    assert not refused.allowed and 0 < refused.retry_after <= 0.2
    await asyncio.sleep(refused.retry_after + 0.05)
    assert (await store.hit("poll", window_seconds=0.2, limit=1)).allowed


async def test_rate_limit_is_exact_under_concurrency(store: EphemeralStore) -> None:
    decisions = await asyncio.gather(*(store.hit("burst", 600, 10) for _ in range(60)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


# --- bad input ---------------------------------------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[EphemeralStore], Awaitable[object]]]] = [
    ("invalid_key", lambda s: s.get("")),
    ("invalid_key", lambda s: s.get(b"bytes-key")),  # type: ignore[arg-type]
    ("invalid_key", lambda s: s.put("k" * (MAX_KEY_LENGTH + 1), b"v", 1)),
    ("invalid_key", lambda s: s.take(None)),  # type: ignore[arg-type]
    ("invalid_key", lambda s: s.hit("", 1, 1)),
    ("invalid_value", lambda s: s.put("k", "text", 1)),  # type: ignore[arg-type]
    ("invalid_value", lambda s: s.compare_and_set("k", b"a", bytearray(b"b"), 1)),  # type: ignore[arg-type]
    ("invalid_ttl", lambda s: s.put("k", b"v", 0)),
    ("invalid_ttl", lambda s: s.put_if_absent("k", b"v", -1)),
    ("invalid_ttl", lambda s: s.put("k", b"v", math.nan)),
    ("invalid_ttl", lambda s: s.put("k", b"v", math.inf)),
    ("invalid_ttl", lambda s: s.put("k", b"v", 10**12)),
    ("invalid_ttl", lambda s: s.put("k", b"v", True)),
    ("invalid_ttl", lambda s: s.consume_once("k", "30", time.time())),  # type: ignore[arg-type]
    ("invalid_window", lambda s: s.hit("k", 0, 1)),
    ("invalid_limit", lambda s: s.hit("k", 1, 0)),
    ("invalid_limit", lambda s: s.hit("k", 1, 2.5)),  # type: ignore[arg-type]
    ("invalid_issued_at", lambda s: s.consume_once("k", 30, math.nan)),
]


@pytest.mark.parametrize(("reason", "call"), BAD_CALLS)
async def test_bad_arguments_get_a_typed_error_with_a_reason(
    store: EphemeralStore, reason: str, call: Callable[[EphemeralStore], Awaitable[object]]
) -> None:
    with pytest.raises(InvalidStoreArgument) as raised:
        await call(store)
    assert raised.value.reason == reason
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_any_text_key_and_binary_value_round_trip(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = backend_url(request, backend)
    prefix = f"ecard-test:{uuid.uuid4().hex[:12]}:"
    with asyncio.Runner() as runner:
        store = open_store(url, prefix)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(key=st.text(min_size=1, max_size=200), value=st.binary(max_size=2048))
        def round_trip(key: str, value: bytes) -> None:
            async def check() -> None:
                await store.put(key, value, ttl=30)
                assert await store.get(key) == value
                assert await store.take(key) == value
                assert await store.get(key) is None

            runner.run(check())

        try:
            round_trip()
        finally:
            runner.run(store.close())
            if url:
                runner.run(_delete_prefix(url, prefix))


# --- memory backend specifics ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_expiry_is_exact() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.put("k", b"v", ttl=10)
    clock.now += 9.999999
    assert await store.get("k") == b"v"
    clock.now += 0.000001
    assert await store.get("k") is None


async def test_memory_purges_expired_entries_without_being_read() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock, sweep_batch=32)
    for n in range(10_000):
        await store.put(f"old:{n}", b"v", ttl=1)
    clock.now += 2
    for n in range(1_000):
        await store.put(f"new:{n}", b"v", ttl=1)
        assert store.size <= 10_000 + 1, "each write purges more expired entries than it adds"
    for n in range(1_000):
        await store.put_if_absent(f"marker:{n}", b"1", ttl=60)
    assert store.size == 2_000, "only live entries remain"
    assert all(await asyncio.gather(*(store.get(f"marker:{n}") for n in range(1_000))))


async def test_memory_does_not_grow_when_one_key_is_rewritten_forever() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for _ in range(50_000):
        await store.hit("busy", window_seconds=3600, limit=1_000_000)
        await store.put("session", b"v", ttl=3600)
    assert store.size == 2
    assert len(store._expiry_heap) < 5_000, "stale expiry records are compacted"


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 20),
    window=st.floats(0.5, 100),
    gaps=st.lists(st.floats(0, 10), min_size=1, max_size=80),
)
def test_memory_rate_limit_holds_the_long_run_rate_and_exact_retry_after(
    limit: int, window: float, gaps: list[float]
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = MemoryStore(clock=clock)
        start, allowed = clock.now, 0
        for gap in gaps:
            clock.now += gap
            decision = await store.hit("k", window, limit)
            if decision.allowed:
                allowed += 1
            else:
                assert 0 < decision.retry_after <= window / limit
                waited = clock.now
                clock.now += decision.retry_after + 1e-9
                assert (await store.hit("k", window, limit)).allowed, (
                    "allowed exactly after retry_after"
                )
                allowed += 1
                assert clock.now > waited
            assert allowed <= limit + (clock.now - start) * limit / window + 1e-6

    asyncio.run(scenario())


# --- Redis backend specifics -----------------------------------------------------------------


async def test_redis_stores_with_different_prefixes_are_isolated(
    redis_url_any: str, prefix: str
) -> None:
    first, second, same = (
        open_store(redis_url_any, prefix + "a:"),
        open_store(redis_url_any, prefix + "b:"),
        open_store(redis_url_any, prefix + "a:"),
    )
    try:
        await first.put("k", b"from-a", ttl=30)
        assert await second.get("k") is None
        assert await same.get("k") == b"from-a", "another worker with the same prefix shares state"
    finally:
        for opened in (first, second, same):
            await opened.close()
        await _delete_prefix(redis_url_any, prefix)


@pytest.fixture()
async def redis_store(redis_url_any: str, prefix: str) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis_url_any, prefix)
    yield opened
    await opened.close()
    await _delete_prefix(redis_url_any, prefix)


def count_pipelines(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    make = store._redis.pipeline

    def counting(*args: object, **kwargs: object) -> object:
        sent.append(1)
        return make(*args, **kwargs)

    monkeypatch.setattr(store._redis, "pipeline", counting)
    return sent


async def test_concurrent_commands_share_pipelines_and_keep_their_own_answers(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = count_pipelines(redis_store, monkeypatch)
    await redis_store.store_started_at()
    await redis_store.put("held", b"value", 30)
    issued = time.time()
    sent.clear()
    answers = await asyncio.gather(
        *(redis_store.consume_once("same-code", 30, issued) for _ in range(100)),
        *(redis_store.consume_once(f"code-{n}", 30, issued) for n in range(100)),
        *(redis_store.get("held") for _ in range(50)),
        *(redis_store.hit("bucket", 60, 10) for _ in range(50)),
    )
    assert Counter(answers[:100]) == {Consumption.FIRST_USE: 1, Consumption.ALREADY_USED: 99}
    assert set(answers[100:200]) == {Consumption.FIRST_USE}
    assert set(answers[200:250]) == {b"value"}
    assert sum(decision.allowed for decision in answers[250:]) == 10
    assert 1 < len(sent) < 300 / 10, "one pipeline per round trip, not one per command"


async def test_scripts_redis_forgot_are_loaded_again(redis_store: RedisStore) -> None:
    await redis_store.store_started_at()
    await asyncio.sleep(0.01)
    await redis_store._redis.script_flush()
    answers = await asyncio.gather(
        *(redis_store.consume_once(f"code-{n}", 30, time.time()) for n in range(20)),
        *(redis_store.check_revocation([f"mark-{n}"], time.time()) for n in range(20)),
        redis_store.compare_and_set("absent", b"a", b"b", 30),
    )
    assert set(answers[:20]) == {Consumption.FIRST_USE}
    assert set(answers[20:40]) == {Revocation.NONE}
    assert answers[40] is False


async def test_an_error_in_one_command_leaves_the_others_of_its_pipeline_answered(
    redis_store: RedisStore, prefix: str
) -> None:
    await redis_store._redis.rpush(redis_store._value_key("a-list"), b"x")  # GET fails: WRONGTYPE
    answers = await asyncio.gather(
        redis_store.get("a-list"),
        *(redis_store.put_if_absent(f"k{n}", b"1", 30) for n in range(10)),
        return_exceptions=True,
    )
    assert "WRONGTYPE" in str(answers[0])
    assert answers[1:] == [True] * 10


async def test_a_cancelled_caller_does_not_disturb_the_others(redis_store: RedisStore) -> None:
    calls = [asyncio.ensure_future(redis_store.put_if_absent(f"k{n}", b"1", 30)) for n in range(60)]
    await asyncio.sleep(0)
    for call in calls[::3]:
        call.cancel()
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert all(answer is True for n, answer in enumerate(answers) if n % 3)
    assert await redis_store.put_if_absent("k1", b"1", 30) is False


@pytest.mark.timeout(10)
async def test_every_command_of_a_failed_pipeline_is_unavailable() -> None:
    store = open_store(f"redis://127.0.0.1:{_closed_port()}/0", "ecard-test:")
    answers = await asyncio.gather(
        *(store.consume_once(f"code-{n}", 30, time.time()) for n in range(20)),
        *(store.get(f"k{n}") for n in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(answer, StoreUnavailable) for answer in answers)
    await store.close()


RACE_WORKER = """
import asyncio, json, sys, time
from ecard.store.ephemeral import RedisStore

async def main(url, prefix, start_at, keys):
    store = RedisStore(url, prefix)
    await store.ping()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    won = [n for n in range(keys) if await store.put_if_absent(f"race:{n}", b"1", 30)]
    await store.close()
    print(json.dumps(won))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


async def test_redis_put_if_absent_has_one_winner_across_processes(
    redis_url_any: str, prefix: str
) -> None:
    keys, workers = 300, 4
    start_at = time.time() + 1.5
    args = (RACE_WORKER, redis_url_any, prefix, repr(start_at), str(keys))
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", *args, stdout=subprocess.PIPE)
        for _ in range(workers)
    ]
    try:
        outputs = await asyncio.gather(*(process.communicate() for process in processes))
    finally:
        await _delete_prefix(redis_url_any, prefix)
    assert all(process.returncode == 0 for process in processes)
    wins = Counter(n for stdout, _ in outputs for n in json.loads(stdout))
    assert wins == Counter(range(keys)), "every key won exactly once"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


UNAVAILABLE_CALLS: list[Callable[[EphemeralStore], Awaitable[object]]] = [
    lambda s: s.ping(),
    lambda s: s.put("k", b"v", 1),
    lambda s: s.get("k"),
    lambda s: s.delete("k"),
    lambda s: s.put_if_absent("k", b"v", 1),
    lambda s: s.take("k"),
    lambda s: s.compare_and_set("k", b"a", b"b", 1),
    lambda s: s.hit("k", 1, 1),
    lambda s: s.consume_once("k", 1, time.time()),
    lambda s: s.store_started_at(),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("call", UNAVAILABLE_CALLS)
async def test_unreachable_redis_raises_store_unavailable(
    call: Callable[[EphemeralStore], Awaitable[object]],
) -> None:
    store = open_store(f"redis://127.0.0.1:{_closed_port()}/0", "ecard-test:")
    with pytest.raises(StoreUnavailable) as raised:
        await call(store)
    assert raised.value.reason == "store_unavailable"
    await store.close()


@pytest.mark.timeout(10)
async def test_silent_redis_times_out_as_store_unavailable() -> None:
    """A peer that accepts connections but never answers must not hang a request."""
    held: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", "ecard-test:", timeout=0.2)
    try:
        with pytest.raises(StoreUnavailable):
            await store.put_if_absent("k", b"v", 1)
    finally:
        await store.close()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_primary_replaced_since_the_start_fails_closed(
    redis_store: RedisStore, redis_url_any: str
) -> None:
    """A promoted replica may lack the last markers its primary acknowledged (replication is
    asynchronous): a group whose start was written by another primary (another replication ID)
    begins afresh, so what was issued before is refused or sent to the durable record."""
    await redis_store.store_started_at()
    issued_at = time.time()
    assert await redis_store.consume_once("code:1", 30, issued_at) is Consumption.FIRST_USE
    marker = redis_store._markers[_group("code:1")]
    raw = _connect(redis_url_any, 2.0)
    try:
        started, _, _ = (await raw.get(marker)).decode().partition(" ")
        # what the group's marker looks like on a replica promoted after it lost the code's marker
        await raw.set(marker, f"{started} {'0' * 40}")
        await raw.delete(redis_store._value_key("code:1"))
    finally:
        await raw.aclose()
    await asyncio.sleep(0.01)
    assert await redis_store.consume_once("code:1", 30, issued_at) is Consumption.PREDATES_STORE
    assert await redis_store.check_revocation(["code:1"], issued_at) is Revocation.PREDATES_STORE
    assert await redis_store.consume_once("code:1", 30, time.time()) is Consumption.FIRST_USE


def test_every_script_touches_one_slot_and_groups_divide_the_slots_evenly() -> None:
    span = 16384 // GROUPS
    assert [key_slot(tag.encode()) // span for tag in _GROUP_TAGS] == list(range(GROUPS))
    store = RedisStore("redis://127.0.0.1:1/0", "ecard:")  # never connects
    for key in ["code:abc", "holder-off:s:1", "oidc:code:x{y}", "{z}", "键"]:
        slot = key_slot(store._value_key(key).encode())
        assert key_slot(store._markers[_group(key)].encode()) == slot
        assert key_slot(store._name("r:", key).encode()) == slot
    counts = Counter(_group(f"code:{n}") for n in range(25_600))
    assert len(counts) == GROUPS and max(counts.values()) < 2 * min(counts.values())


def test_a_prefix_with_a_brace_is_refused() -> None:
    with pytest.raises(InvalidStoreArgument) as raised:
        RedisStore("redis://127.0.0.1:1/0", "ecard{x}:")
    assert raised.value.reason == "invalid_prefix"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("redis+cluster://127.0.0.1:notaport", "bad host"),
        ("redis+cluster://,127.0.0.1:7000", "empty host"),
        ("redis+sentinel://127.0.0.1:26379", "service_name"),
        ("redis+sentinel://127.0.0.1:26379/primary/x", "service_name"),
    ],
)
def test_malformed_cluster_and_sentinel_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidStoreArgument, match=message):
        open_store(url, "ecard:")


@pytest.mark.redis_cluster
async def test_a_single_node_url_on_a_cluster_node_says_what_to_use(
    redis_cluster_url: str, prefix: str
) -> None:
    """``redis://`` pointed at a cluster node: a 503 that names the URL form, not a 500."""
    seed = redis_cluster_url.split("://", 1)[1].split(",")[0]
    store = open_store(f"redis://{seed}/0", prefix)
    try:
        answers = [await store.put(f"k{n}", b"v", 5) for n in range(8)]
    except StoreUnavailable as exc:
        assert "redis+cluster://" in str(exc)
    else:
        raise AssertionError(f"eight keys all on the one node's slots: {answers}")
    finally:
        await store.close()
