"""The ephemeral store: short-lived state shared by all workers, in Redis or in process memory.

Single-use code markers, login sessions, authorization codes and rate-limit buckets live here.
Nothing durable lives only here.  Every operation that must be atomic across workers (consume a
code once, redeem an authorization code once, move a login session from pending to answered) is
one atomic step in the store itself: ``SET NX``, ``GETDEL`` or a Lua script on Redis, a section
without ``await`` in the memory store.

Both backends behave the same; one test suite runs against both.  Redis must be standalone or
Sentinel-managed (not Cluster: scripts touch two keys), version 6.2 or later (``GETDEL``), and
configured with ``maxmemory-policy noeviction``: an evicted single-use marker would let a code be
accepted twice, which :meth:`EphemeralStore.store_started_at` cannot detect.

A flushed or restarted store is detected, not trusted: :meth:`EphemeralStore.store_started_at`
moves forward whenever the store's contents began afresh, and :meth:`EphemeralStore.consume_once`
refuses any code issued before that moment (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol, cast, runtime_checkable

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_KEY_LENGTH = 1024
MAX_SECONDS = 366 * 86400  # TTLs and windows: anything longer is not ephemeral
SOCKET_TIMEOUT_SECONDS = 0.5
MAX_PIPELINE = 256  # commands per pipeline; more wait for the next one
_UNAVAILABLE_REPLY_PREFIXES = ("OOM", "MASTERDOWN", "MISCONF", "NOREPLICAS", "LOADING")

# Key layout under the prefix, so caller keys can never collide with buckets or the start marker.
_VALUE_NAMESPACE = "v:"
_BUCKET_NAMESPACE = "r:"
_STARTED_AT_KEY = "m:started-at"


class StoreError(Exception):
    """Base of the store's errors; ``reason`` is a stable code for logs and API problems."""

    reason = "store_error"


class StoreUnavailable(StoreError):
    """The store cannot be reached or cannot accept writes right now (the service answers 503)."""

    reason = "store_unavailable"


class InvalidStoreArgument(StoreError, ValueError):
    """A caller passed a key, value, TTL or limit the store refuses; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RateDecision(msgspec.Struct, frozen=True):
    """Outcome of one rate-limited hit; ``retry_after`` (seconds) is 0 when allowed."""

    allowed: bool
    remaining: int
    retry_after: float


class Consumption(enum.StrEnum):
    """Outcome of :meth:`EphemeralStore.consume_once`; only ``FIRST_USE`` may be accepted."""

    FIRST_USE = "first_use"
    ALREADY_USED = "already_used"
    PREDATES_STORE = "predates_store"


class Revocation(enum.StrEnum):
    """Whether something issued at a time was revoked since (see ``check_revocation``)."""

    NONE = "none"
    REVOKED = "revoked"
    PREDATES_STORE = "predates_store"  # a flush may have lost its revocation: ask the database


@runtime_checkable
class EphemeralStore(Protocol):
    """Short-lived shared state with TTLs in float seconds; keys are text, values bytes."""

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any previous value."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The live value under ``key``, or None when absent or expired."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when a live value was removed."""
        ...

    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Store only if no live value exists: True for exactly one caller across all workers."""
        ...

    async def take(self, key: str) -> bytes | None:
        """Atomically read and remove ``key``: at most one caller ever gets the value."""
        ...

    async def compare_and_set(self, key: str, expected: bytes, new: bytes, ttl: float) -> bool:
        """Replace the live value only if it equals ``expected``; True for exactly one caller."""
        ...

    async def hit(self, key: str, window_seconds: float, limit: int) -> RateDecision:
        """Count one hit against a GCRA limiter allowing ``limit`` hits per window.

        GCRA (a sliding leaky bucket): a burst of up to ``limit`` hits is allowed, after which
        capacity returns steadily at one hit per ``window_seconds / limit``; refused hits do
        not consume capacity.  The sustained rate is exactly ``limit`` per window, with no
        window-boundary reset to exploit (any one window can see at most ``2 * limit - 1``
        hits: a full burst plus the refill).  ``retry_after`` is the exact wait until the next
        hit is allowed; the Redis backend keeps time by the Redis server's clock.
        """
        ...

    async def consume_once(self, key: str, ttl: float, issued_at: float) -> Consumption:
        """Mark a single-use code used, atomically with the check against the store's start.

        ``issued_at`` is the code's issue time (epoch seconds).  A code issued before the store's
        contents began may have been used in a store that was since flushed, so it is refused.
        """
        ...

    async def check_revocation(self, keys: list[str], issued_at: float) -> Revocation:
        """Was something issued at ``issued_at`` (epoch seconds) and named by ``keys`` revoked
        since?  REVOKED when one of the keys holds a revocation time (written with :meth:`put` as
        ``repr(epoch seconds)``; anything else counts as revoked) at or after ``issued_at``;
        PREDATES_STORE when the store's contents began after ``issued_at``, so a flush may have
        lost the revocation and the caller must ask the durable record.  One atomic read.
        """
        ...

    async def store_started_at(self) -> float:
        """Epoch seconds at which the store's current contents began; later after a flush.

        Call it once at start-up, before any code is issued: on an empty Redis the first call
        sets the start, and codes issued before that are refused by :meth:`consume_once`.
        """
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise :class:`StoreUnavailable` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections or memory."""
        ...


def open_store(redis_url: str | None, prefix: str) -> EphemeralStore:
    """Redis when a URL is configured, otherwise the single-process memory store."""
    if redis_url:
        return RedisStore(redis_url, prefix)
    return MemoryStore()


# --- argument checks shared by both backends -----------------------------------------------


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidStoreArgument("invalid_key", "store key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidStoreArgument(
            "invalid_key", f"store key is longer than {MAX_KEY_LENGTH} characters"
        )
    return key


def _check_value(value: bytes, name: str = "value") -> bytes:
    if not isinstance(value, bytes):
        raise InvalidStoreArgument("invalid_value", f"store {name} must be bytes")
    return value


def _check_seconds(seconds: float, name: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidStoreArgument(f"invalid_{name}", f"{name} must be a number of seconds")
    if not 0 < seconds <= MAX_SECONDS:  # also refuses NaN and infinities
        raise InvalidStoreArgument(
            f"invalid_{name}", f"{name} must be more than 0 and at most {MAX_SECONDS} seconds"
        )
    return float(seconds)


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidStoreArgument("invalid_limit", "rate limit must be a positive integer")
    return limit


def _check_issued_at(issued_at: float) -> float:
    if (
        isinstance(issued_at, bool)
        or not isinstance(issued_at, int | float)
        or not math.isfinite(issued_at)
    ):
        raise InvalidStoreArgument("invalid_issued_at", "issued_at must be finite epoch seconds")
    return float(issued_at)


def _gcra(
    tat: float | None, now: float, window: float, limit: int
) -> tuple[RateDecision, float | None]:
    """One GCRA step: the decision and the new theoretical arrival time (None when refused).

    The Redis backend runs the same arithmetic in :data:`_HIT_SCRIPT`.
    """
    interval = window / limit
    new_tat = max(tat if tat is not None else now, now) + interval
    allow_at = new_tat - window
    if now < allow_at:
        return RateDecision(
            allowed=False, remaining=0, retry_after=min(allow_at - now, interval)
        ), None
    remaining = math.floor((window - (new_tat - now)) / interval + 1e-9)
    return RateDecision(allowed=True, remaining=remaining, retry_after=0.0), new_tat


# --- memory ----------------------------------------------------------------------------------


class MemoryStore:
    """In-process store for a single worker; expiry is exact and memory stays bounded.

    Expired entries are invisible the instant they expire and are purged lazily on access and by
    a sweep of at most ``sweep_batch`` entries on every write (an expiry heap finds them), so the
    memory held never outgrows the live entries by more than the writes since the last sweep.
    There is nothing to namespace in a private store, so it takes no prefix.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sweep_batch: int = 32,
    ) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._expiry_heap: list[tuple[float, str]] = []
        self._sweep_batch = sweep_batch
        self._started_at = wall_clock()

    @property
    def size(self) -> int:
        """Entries held in memory, including expired ones not yet purged."""
        return len(self._entries)

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= now:
            del self._entries[key]
            return None
        return value

    def _pop_live(self, key: str) -> bytes | None:
        value = self._live(key, self._clock())
        if value is not None:
            del self._entries[key]
        return value

    def _write(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        self._entries[key] = (value, expires_at)
        heapq.heappush(self._expiry_heap, (expires_at, key))
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        heap = self._expiry_heap
        for _ in range(self._sweep_batch):
            if not heap or heap[0][0] > now:
                break
            expires_at, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is not None and entry[1] == expires_at:
                del self._entries[key]
        if len(heap) > 2 * len(self._entries) + 1024:  # overwritten keys leave stale heap items
            self._expiry_heap = [
                (expires_at, key) for key, (_, expires_at) in self._entries.items()
            ]
            heapq.heapify(self._expiry_heap)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        key, value, ttl = _check_key(key), _check_value(value), _check_seconds(ttl, "ttl")
        now = self._clock()
        self._write(_VALUE_NAMESPACE + key, value, now + ttl, now)

    async def get(self, key: str) -> bytes | None:
        return self._live(_VALUE_NAMESPACE + _check_key(key), self._clock())

    async def delete(self, key: str) -> bool:
        return self._pop_live(_VALUE_NAMESPACE + _check_key(key)) is not None

    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        key, value, ttl = _check_key(key), _check_value(value), _check_seconds(ttl, "ttl")
        now = self._clock()
        if self._live(_VALUE_NAMESPACE + key, now) is not None:
            return False
        self._write(_VALUE_NAMESPACE + key, value, now + ttl, now)
        return True

    async def take(self, key: str) -> bytes | None:
        return self._pop_live(_VALUE_NAMESPACE + _check_key(key))

    async def compare_and_set(self, key: str, expected: bytes, new: bytes, ttl: float) -> bool:
        key, ttl = _check_key(key), _check_seconds(ttl, "ttl")
        expected, new = _check_value(expected, "expected value"), _check_value(new, "new value")
        now = self._clock()
        current = self._live(_VALUE_NAMESPACE + key, now)
        if current is None or not hmac.compare_digest(current, expected):
            return False
        self._write(_VALUE_NAMESPACE + key, new, now + ttl, now)
        return True

    async def hit(self, key: str, window_seconds: float, limit: int) -> RateDecision:
        key, window = _check_key(key), _check_seconds(window_seconds, "window")
        limit = _check_limit(limit)
        now = self._clock()
        stored = self._live(_BUCKET_NAMESPACE + key, now)
        decision, new_tat = _gcra(float(stored) if stored is not None else None, now, window, limit)
        if new_tat is not None:
            self._write(_BUCKET_NAMESPACE + key, repr(new_tat).encode(), new_tat, now)
        return decision

    async def consume_once(self, key: str, ttl: float, issued_at: float) -> Consumption:
        key, ttl, issued_at = (
            _check_key(key),
            _check_seconds(ttl, "ttl"),
            _check_issued_at(issued_at),
        )
        if issued_at < self._started_at:
            return Consumption.PREDATES_STORE
        first = await self.put_if_absent(key, b"1", ttl)
        return Consumption.FIRST_USE if first else Consumption.ALREADY_USED

    async def check_revocation(self, keys: list[str], issued_at: float) -> Revocation:
        issued_at, now = _check_issued_at(issued_at), self._clock()
        for key in keys:
            revoked_at = self._live(_VALUE_NAMESPACE + _check_key(key), now)
            if revoked_at is not None and _revocation_time(revoked_at) >= issued_at:
                return Revocation.REVOKED
        return Revocation.PREDATES_STORE if issued_at < self._started_at else Revocation.NONE

    async def store_started_at(self) -> float:
        return self._started_at

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._expiry_heap.clear()


# --- Redis -----------------------------------------------------------------------------------

_COMPARE_AND_SET_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# Same arithmetic as _gcra, in microseconds of the Redis server's clock so every worker agrees.
_HIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local interval = window / tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil(math.min(allow_at - now, interval))}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((window - (new_tat - now)) / interval + 1e-9), 0}
"""

# The start marker (KEYS[1]) as ``started``, created with ARGV[1] (the caller's clock) when the
# store is empty; the scripts below begin with it.
_READ_START = """
local started = redis.call('GET', KEYS[1])
if not started then
  redis.call('SET', KEYS[1], ARGV[1])
  started = ARGV[1]
end
"""
_STARTED_AT_SCRIPT = _READ_START + "return started\n"

_CONSUME_ONCE_SCRIPT = (
    _READ_START
    + """
if tonumber(ARGV[2]) < tonumber(started) then
  return 'predates_store'
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return 'first_use'
end
return 'already_used'
"""
)


# ARGV[2]: issued_at; KEYS[2..]: the revocation markers.
_CHECK_REVOCATION_SCRIPT = (
    _READ_START
    + """
local issued_at = tonumber(ARGV[2])
for i = 2, #KEYS do
  local marker = redis.call('GET', KEYS[i])
  if marker then
    local revoked_at = tonumber(marker)
    if revoked_at == nil or revoked_at >= issued_at then
      return 'revoked'
    end
  end
end
if issued_at < tonumber(started) then
  return 'predates_store'
end
return 'none'
"""
)


def _revocation_time(value: bytes) -> float:
    """A revocation marker's time; one that is not a number revokes everything (fail closed)."""
    try:
        return float(value)
    except ValueError:
        return math.inf


def _milliseconds(ttl: float) -> int:
    """Redis expiries are whole milliseconds; round up so nothing expires early."""
    return max(1, math.ceil(ttl * 1000))


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    """Turn every "Redis cannot serve this now" failure into one typed :class:`StoreUnavailable`."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError) as exc:
        raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
    except ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLY_PREFIXES):
            raise StoreUnavailable(
                f"Redis refused the command ({str(exc).split(' ', 1)[0]})"
            ) from exc
        raise


_Call = tuple[Callable[[Any], Any], AsyncScript | None, "asyncio.Future[Any]"]


class _Pipeliner:
    """Commands issued while another is in flight go to Redis together, in one pipeline.

    redis-py sends each command on its own round trip, and its client costs more CPU per command
    than Redis does; under load the requests of one worker share one write and one read instead.
    A command issued while nothing is in flight goes out at once, on its own, so a quiet worker
    pays nothing for this.  Each command keeps its own result or error; a connection failure
    fails every command of its pipeline."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._busy = False  # a command or a pipeline is in flight
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, stage: Callable[[Any], Any], script: AsyncScript | None = None) -> Any:
        """``stage`` issues one command on a client or adds it to a pipeline.  When that command
        is ``script``'s EVALSHA and Redis has forgotten the script (a restart, SCRIPT FLUSH), it
        is loaded and the command sent again."""
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.append((stage, script, future))
            return await future
        self._busy = True
        try:
            try:
                return await stage(self._redis)
            except NoScriptError:
                if script is None:
                    raise
                await self._reload([script])
                return await stage(self._redis)
        finally:
            if self._waiting:  # what queued meanwhile goes next, together
                self._sender = asyncio.get_running_loop().create_task(self._send_waiting())
            else:
                self._busy = False

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:MAX_PIPELINE]
                del self._waiting[:MAX_PIPELINE]
                await self._send(batch, reload_scripts=True)
        finally:
            self._sender = None
            self._busy = False
            if self._waiting:  # only when this task was cancelled (the loop is closing)
                waiting, self._waiting = self._waiting, []
                for _, _, future in waiting:
                    future.cancel()

    async def _send(self, batch: list[_Call], *, reload_scripts: bool) -> None:
        """Send the calls of ``batch`` that are still awaited; none is left unresolved."""
        try:
            batch = [call for call in batch if not call[2].done()]
            if not batch:
                return
            pipeline = self._redis.pipeline(transaction=False)
            for stage, _, _ in batch:
                stage(pipeline)
            try:
                results = await pipeline.execute(raise_on_error=False)
            # the connection failed, so every command of this pipeline did: each caller gets the
            # error, whatever its type (a caller must never be left waiting)
            except Exception as exc:  # noqa: BLE001 - handed to every caller below
                results = [exc] * len(batch)
            forgotten: list[_Call] = []
            for call, result in zip(batch, results, strict=True):
                future = call[2]
                if future.done():
                    continue
                if isinstance(result, NoScriptError) and call[1] is not None and reload_scripts:
                    forgotten.append(call)
                elif isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if forgotten:
                await self._reload([call[1] for call in forgotten if call[1] is not None])
                await self._send(forgotten, reload_scripts=False)
        except Exception as exc:  # noqa: BLE001 - any failure is every waiting caller's error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            for _, _, future in batch:
                future.cancel()  # a no-op when resolved: only a cancellation leaves one pending

    async def _reload(self, scripts: list[AsyncScript]) -> None:
        for script in {script.sha: script for script in scripts}.values():
            await self._redis.script_load(script.script)


class RedisStore:
    """Store shared by all workers through Redis; keys live under ``prefix``.

    Short socket timeouts and a single immediate retry (for a pooled connection that went stale
    when Redis restarted) make a dead Redis a quick :class:`StoreUnavailable`, never a hang.
    Concurrent commands share pipelines (:class:`_Pipeliner`).
    """

    def __init__(self, url: str, prefix: str, *, timeout: float = SOCKET_TIMEOUT_SECONDS) -> None:
        self._prefix = prefix
        self._redis = aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
        )
        self._compare_and_set = self._redis.register_script(_COMPARE_AND_SET_SCRIPT)
        self._hit = self._redis.register_script(_HIT_SCRIPT)
        self._started_at = self._redis.register_script(_STARTED_AT_SCRIPT)
        self._consume_once = self._redis.register_script(_CONSUME_ONCE_SCRIPT)
        self._check_revocation = self._redis.register_script(_CHECK_REVOCATION_SCRIPT)
        self._pipeliner = _Pipeliner(self._redis)

    def _value_key(self, key: str) -> str:
        return self._prefix + _VALUE_NAMESPACE + _check_key(key)

    @property
    def _marker_key(self) -> str:
        return self._prefix + _STARTED_AT_KEY

    async def _evalsha(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await self._pipeliner.run(
            lambda pipeline: pipeline.evalsha(script.sha, len(keys), *keys, *args), script
        )

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        name, value, ttl = self._value_key(key), _check_value(value), _check_seconds(ttl, "ttl")
        with _unavailable_on_failure():
            await self._pipeliner.run(
                lambda pipeline: pipeline.set(name, value, px=_milliseconds(ttl))
            )

    async def get(self, key: str) -> bytes | None:
        name = self._value_key(key)
        with _unavailable_on_failure():
            value: bytes | None = await self._pipeliner.run(lambda pipeline: pipeline.get(name))
            return value

    async def delete(self, key: str) -> bool:
        name = self._value_key(key)
        with _unavailable_on_failure():
            return bool(await self._pipeliner.run(lambda pipeline: pipeline.delete(name)))

    async def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        name, value, ttl = self._value_key(key), _check_value(value), _check_seconds(ttl, "ttl")
        with _unavailable_on_failure():
            return bool(
                await self._pipeliner.run(
                    lambda pipeline: pipeline.set(name, value, nx=True, px=_milliseconds(ttl))
                )
            )

    async def take(self, key: str) -> bytes | None:
        name = self._value_key(key)
        with _unavailable_on_failure():
            value: bytes | None = await self._pipeliner.run(lambda pipeline: pipeline.getdel(name))
            return value

    async def compare_and_set(self, key: str, expected: bytes, new: bytes, ttl: float) -> bool:
        name, ttl = self._value_key(key), _check_seconds(ttl, "ttl")
        expected, new = _check_value(expected, "expected value"), _check_value(new, "new value")
        with _unavailable_on_failure():
            return bool(
                await self._evalsha(
                    self._compare_and_set, [name], [expected, new, _milliseconds(ttl)]
                )
            )

    async def hit(self, key: str, window_seconds: float, limit: int) -> RateDecision:
        name = self._prefix + _BUCKET_NAMESPACE + _check_key(key)
        window_us, limit = _check_seconds(window_seconds, "window") * 1_000_000, _check_limit(limit)
        with _unavailable_on_failure():
            allowed, remaining, retry_after_us = await self._evalsha(
                self._hit, [name], [repr(window_us), limit]
            )
        return RateDecision(
            allowed=bool(allowed), remaining=int(remaining), retry_after=retry_after_us / 1_000_000
        )

    async def consume_once(self, key: str, ttl: float, issued_at: float) -> Consumption:
        name, ttl, issued_at = (
            self._value_key(key),
            _check_seconds(ttl, "ttl"),
            _check_issued_at(issued_at),
        )
        with _unavailable_on_failure():
            outcome = await self._evalsha(
                self._consume_once,
                [self._marker_key, name],
                [repr(time.time()), repr(issued_at), _milliseconds(ttl)],
            )
        return Consumption(outcome.decode())

    async def check_revocation(self, keys: list[str], issued_at: float) -> Revocation:
        names, issued_at = [self._value_key(key) for key in keys], _check_issued_at(issued_at)
        with _unavailable_on_failure():
            outcome = await self._evalsha(
                self._check_revocation,
                [self._marker_key, *names],
                [repr(time.time()), repr(issued_at)],
            )
        return Revocation(outcome.decode())

    async def store_started_at(self) -> float:
        with _unavailable_on_failure():
            return float(
                await self._evalsha(self._started_at, [self._marker_key], [repr(time.time())])
            )

    async def ping(self) -> None:
        with _unavailable_on_failure():
            # redis-py types its commands for both clients; the asyncio client's return awaitables
            await cast("Awaitable[bool]", self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
