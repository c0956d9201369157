"""The ephemeral store: short-lived state shared by all workers, in Redis or in process memory.

Single-use code markers, login sessions, authorization codes and rate-limit buckets live here.
Nothing durable lives only here.  Every operation that must be atomic across workers (consume a
code once, redeem an authorization code once, move a login session from pending to answered) is
one atomic step in the store itself: ``SET NX``, ``GETDEL`` or a Lua script on Redis, a section
without ``await`` in the memory store.  Both backends behave the same; one test suite runs against
the memory store, a single Redis and a Redis Cluster.

**Which Redis** (``ECARD_REDIS_URL``, :func:`open_store`):

- ``redis://``, ``rediss://``, ``unix://``: one Redis (redis-py's URL syntax, ``/db`` included).
- ``redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]``: the primary that the
  Sentinels name ``service``, looked up again after a failover (redis-py's Sentinel client).
- ``redis+cluster://[user:password@]host:port[,host:port…]`` (``rediss+cluster://`` with TLS): a
  Redis Cluster through redis-py's asyncio ``RedisCluster``; the hosts are seeds, the other nodes
  are discovered.  redis-py has no URL form for a cluster (``RedisCluster.from_url`` takes one
  node and the caller must already know it is a cluster), so the scheme says it.

The store needs Redis 6.2 or later (``GETDEL``) with ``maxmemory-policy noeviction``: an evicted
single-use marker would let a code be accepted twice, and eviction cannot be detected.

**Key layout, and why every script stays in one slot.**  Every key is
``<prefix>{<tag>}<namespace><key>``: ``v:`` values, ``r:`` rate buckets, ``m:started-at`` the
start markers.  The tag is one of :data:`GROUPS` (256) group tags, picked by CRC-32 of the
caller's key; group ``g``'s tag hashes into slots ``[64 g, 64 g + 64)``, so the groups divide the
16,384 slots evenly, land on the primaries in proportion to the slots each serves, and are never
split (Redis moves whole slots).  Each group has its own start marker, in the same slot as the
keys it guards, so every script touches one slot: ``consume_once`` (the group's marker and the
code's key), ``store_started_at`` (a marker), the rate limiter and ``compare_and_set`` (one key).
``check_revocation`` is given keys of different groups (a session, an e-card and a card): it runs
one script per group and combines the answers (REVOKED if any group says so, else PREDATES_STORE
if any group does, else NONE).  That answers as the single read did: each group's markers are
compared with its own start atomically, and a revocation written to one group while another is
being read is one that happened after the check.  Not everything under one tag: one slot is one
primary, and the cluster would serve everything from one node.  Not a marker per primary: slots
move between primaries (resharding, failover) and a marker must move with the keys it guards.
The same layout serves a single Redis and Sentinel, so a store can move between them; keys
written before this layout existed are not found, which looks like a flushed store (below).

**A flushed store, a lost primary and a failover are detected, not trusted.**  A marker holds
the time its group's contents began and the replication ID (``master_replid``) of the primary
that wrote it.  A script that finds no marker (a flush, a restart without persistence, keys lost
with their primary) or a marker written under another replication ID (a replica promoted by a
Cluster or Sentinel failover, a restarted primary, a slot moved to another primary) starts its
group afresh at the caller's clock.  This matters because replication is asynchronous: a promoted
replica may lack the last single-use markers its primary acknowledged.  After a fresh start
:meth:`EphemeralStore.consume_once` refuses every code of that group issued before it
(PREDATES_STORE, fail closed: the app fetches a new code) and
:meth:`EphemeralStore.check_revocation` sends the caller to the durable record.  The cost is one
``INFO replication`` inside those scripts (a few microseconds of Redis CPU) and, after a failover,
the refusal of the affected groups' older codes once.  ``put_if_absent``, ``take`` and
``compare_and_set`` carry no issue time: a failover may lose their last writes as a flush would
(``min-replicas-to-write`` bounds that window on the Redis side).

**Failures.**  A connection that fails or times out, ``CLUSTERDOWN``, a slot without a primary,
``READONLY`` (a demoted primary), ``LOADING``, ``OOM`` … raise :class:`StoreUnavailable` at once
(the service answers 503 with ``Retry-After``).  ``MOVED`` and ``ASK`` are followed and
``TRYAGAIN`` retried by redis-py: a refused command did not run, so following it cannot apply it
twice.  A command retried after a lost connection may have run already: every single-use
operation then answers "already used" (or no value), so a retry can refuse, never accept twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import hmac
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol, cast, runtime_checkable
from urllib.parse import unquote, urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_KEY_LENGTH = 1024
MAX_SECONDS = 366 * 86400  # TTLs and windows: anything longer is not ephemeral
SOCKET_TIMEOUT_SECONDS = 0.5
MAX_PIPELINE = 256  # commands per pipeline; more wait for the next one
_UNAVAILABLE_REPLY_PREFIXES = ("OOM", "MASTERDOWN", "MISCONF", "NOREPLICAS", "LOADING")
GROUPS = 256  # key groups, each with its own hash tag and start marker (see the docstring)

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
    """Redis when a URL is configured (a single Redis, Sentinel or a Cluster: the module's
    docstring lists the URL forms), otherwise the single-process memory store."""
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

# The group's start (KEYS[1], "<epoch seconds> <replication id>") as ``started``.  A marker that
# is missing, or was written by a primary with another replication ID (a promoted replica, a
# restart, a moved slot: writes may have been lost), starts the group afresh at ARGV[1] (the
# caller's clock).  The scripts below begin with it.
_READ_START = """
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or '?'
local started = nil
local marker = redis.call('GET', KEYS[1])
if marker then
  local at, written_by = string.match(marker, '^(%S+) (%S+)$')
  if written_by == replid and tonumber(at) then started = at end
end
if not started then
  started = ARGV[1]
  redis.call('SET', KEYS[1], started .. ' ' .. replid)
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


# ARGV[2]: issued_at; KEYS[2..]: the revocation markers (all of KEYS[1]'s group).
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


def _group_tags() -> tuple[str, ...]:
    """One hash tag per group, group ``g``'s in slots ``[g * span, (g + 1) * span)``: the first
    hexadecimal counter value whose slot falls there (about 1,600 CRC16s, once)."""
    span = REDIS_CLUSTER_HASH_SLOTS // GROUPS
    tags: list[str | None] = [None] * GROUPS
    missing, counter = GROUPS, 0
    while missing:
        candidate = f"{counter:x}"
        group = key_slot(candidate.encode()) // span
        if tags[group] is None:
            tags[group] = candidate
            missing -= 1
        counter += 1
    return tuple(tag for tag in tags if tag is not None)


_GROUP_TAGS = _group_tags()


def _group(key: str) -> int:
    """The group of a caller's key (stable across workers and releases)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % GROUPS


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
    """Turn every "Redis cannot serve this now" failure into one typed :class:`StoreUnavailable`:
    a lost or slow connection, a cluster that is down, has no primary for a slot, or keeps
    redirecting (a failover or a resharding under way)."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError) as exc:
        raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
    except (ClusterError, TryAgainError, RedisClusterException) as exc:
        raise StoreUnavailable(
            f"the Redis Cluster cannot serve now ({type(exc).__name__})"
        ) from exc
    except AskError as exc:  # MOVED too: a redirection redis-py could not follow to its end
        raise StoreUnavailable(
            f"Redis redirected the command ({type(exc).__name__}); a Redis Cluster needs a "
            "redis+cluster:// URL"
        ) from exc
    except ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLY_PREFIXES):
            raise StoreUnavailable(
                f"Redis refused the command ({str(exc).split(' ', 1)[0]})"
            ) from exc
        raise


# --- which Redis: the URL ---------------------------------------------------------------------

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SENTINEL_SCHEME = "redis+sentinel"
URL_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    *(f"{scheme}://" for scheme in _CLUSTER_SCHEMES),
)


def _hosts(url: str, default_port: int) -> tuple[str, list[tuple[str, int]], str]:
    """``scheme://[userinfo@]host:port[,host:port…][/path][?query]`` → the userinfo (with its
    ``@``, or empty), the hosts and the rest (path and query)."""
    rest = url.split("://", 1)[1]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, _, hostlist = netloc.rpartition("@")
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        try:
            parsed = urlsplit(f"//{item}")
            host, port = parsed.hostname, parsed.port or default_port
        except ValueError as exc:
            raise InvalidStoreArgument("invalid_url", f"bad host in Redis URL: {exc}") from exc
        if not host:
            raise InvalidStoreArgument("invalid_url", "Redis URL names an empty host")
        hosts.append((host, port))
    return (userinfo + "@" if userinfo else ""), hosts, tail


def _connect(url: str, timeout: float) -> Any:
    """The redis-py client the URL asks for (see the module's docstring)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": False,
    }
    scheme = url.split("://", 1)[0]
    if scheme in _CLUSTER_SCHEMES:
        userinfo, hosts, tail = _hosts(url, 6379)
        path = urlsplit(tail).path
        if path not in ("", "/", "/0"):
            raise InvalidStoreArgument("invalid_url", "a Redis Cluster has only database 0")
        (host, port), seeds = hosts[0], hosts[1:]
        first = f"{_CLUSTER_SCHEMES[scheme]}://{userinfo}{_netloc(host, port)}{tail}"
        # one retry (redis-py's default is three with backoff of up to 10 s): a failover answers
        # 503 at once, the client's next command finds the new topology
        return RedisCluster.from_url(
            first,
            startup_nodes=[ClusterNode(host, port) for host, port in seeds],
            retry=Retry(NoBackoff(), 1),
            **options,
        )
    if scheme == _SENTINEL_SCHEME:
        userinfo, hosts, tail = _hosts(url, 26379)
        parts = [part for part in urlsplit(tail).path.split("/") if part]
        if not 1 <= len(parts) <= 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise InvalidStoreArgument(
                "invalid_url", "a Sentinel URL ends in /service_name or /service_name/db"
            )
        credentials = urlsplit(f"redis://{userinfo}x")
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts, sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout}
        )
        return sentinel.master_for(
            parts[0],
            db=int(parts[1]) if len(parts) == 2 else 0,
            username=unquote(credentials.username) if credentials.username else None,
            password=unquote(credentials.password) if credentials.password else None,
            retry=Retry(NoBackoff(), 1),
            **options,
        )
    return aioredis.from_url(url, retry=Retry(NoBackoff(), 1), **options)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_Stage = Callable[[Any], Any]
_Call = tuple[_Stage, _Stage | None, "asyncio.Future[Any]"]


class _Pipeliner:
    """Commands issued while another is in flight go to Redis together, in one pipeline.

    redis-py sends each command on its own round trip, and its client costs more CPU per command
    than Redis does; under load the requests of one worker share one write and one read instead.
    A command issued while nothing is in flight goes out at once, on its own, so a quiet worker
    pays nothing for this.  Each command keeps its own result or error; a connection failure
    fails every command of its pipeline.

    On a cluster the pipeline is redis-py's ``ClusterPipeline``: it splits the commands by the
    node serving their slot and sends each node its share at the same time (one round trip per
    node, in parallel), then resends one by one the commands refused with ``MOVED``, ``ASK`` or
    ``TRYAGAIN``.  Its restrictions do not bite here: no transactions (none are used: each
    command is atomic on its own), every command one slot (the key layout), and no command spans
    nodes.  When a node fails, redis-py retries the whole pipeline once against the new topology;
    a command that did run on another node then answers as a repeat (refused, never accepted
    twice, see the module's docstring)."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._busy = False  # a command or a pipeline is in flight
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, stage: _Stage, fallback: _Stage | None = None) -> Any:
        """``stage`` issues one command on a client or adds it to a pipeline.  When that command
        is a script's EVALSHA and the node has not got the script (a restart, SCRIPT FLUSH, a
        replica promoted by a failover), ``fallback`` sends the script itself (EVAL) to the same
        node, which caches it for the EVALSHAs that follow."""
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.append((stage, fallback, future))
            return await future
        self._busy = True
        try:
            try:
                return await stage(self._redis)
            except NoScriptError:
                if fallback is None:
                    raise
                return await fallback(self._redis)
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
                await self._send(batch, retry_forgotten=True)
        finally:
            self._sender = None
            self._busy = False
            if self._waiting:  # only when this task was cancelled (the loop is closing)
                waiting, self._waiting = self._waiting, []
                for _, _, future in waiting:
                    future.cancel()

    async def _send(self, batch: list[_Call], *, retry_forgotten: bool) -> None:
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
                if isinstance(result, NoScriptError) and call[1] is not None and retry_forgotten:
                    forgotten.append(call)
                elif isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if forgotten:  # the same calls again, each with its script's text (EVAL)
                await self._send(
                    [(fallback, None, future) for _, fallback, future in forgotten if fallback],
                    retry_forgotten=False,
                )
        except Exception as exc:  # noqa: BLE001 - any failure is every waiting caller's error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            for _, _, future in batch:
                future.cancel()  # a no-op when resolved: only a cancellation leaves one pending


class RedisStore:
    """Store shared by all workers through Redis (single, Sentinel or Cluster, by the URL); keys
    live under ``prefix``, which must not contain ``{`` (the group tag must be the key's first).

    Short socket timeouts and a single immediate retry (for a pooled connection that went stale
    when Redis restarted) make a dead Redis a quick :class:`StoreUnavailable`, never a hang.
    Concurrent commands share pipelines (:class:`_Pipeliner`).
    """

    def __init__(self, url: str, prefix: str, *, timeout: float = SOCKET_TIMEOUT_SECONDS) -> None:
        if "{" in prefix:
            raise InvalidStoreArgument(
                "invalid_prefix", "the Redis key prefix must not contain '{' (hash tags follow it)"
            )
        self._prefix = prefix
        self._redis = _connect(url, timeout)
        self.cluster = isinstance(self._redis, RedisCluster)
        self._compare_and_set = self._redis.register_script(_COMPARE_AND_SET_SCRIPT)
        self._hit = self._redis.register_script(_HIT_SCRIPT)
        self._started_at = self._redis.register_script(_STARTED_AT_SCRIPT)
        self._consume_once = self._redis.register_script(_CONSUME_ONCE_SCRIPT)
        self._check_revocation = self._redis.register_script(_CHECK_REVOCATION_SCRIPT)
        self._pipeliner = _Pipeliner(self._redis)
        self._markers = [f"{prefix}{{{tag}}}{_STARTED_AT_KEY}" for tag in _GROUP_TAGS]

    def _name(self, namespace: str, key: str) -> str:
        """``<prefix>{<group tag>}<namespace><key>``: the key in its group's slot."""
        return f"{self._prefix}{{{_GROUP_TAGS[_group(key)]}}}{namespace}{key}"

    def _value_key(self, key: str) -> str:
        return self._name(_VALUE_NAMESPACE, _check_key(key))

    async def _evalsha(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        # the raw command, not ``pipeline.evalsha``: redis-py (up to 7.4) blocks that method in
        # cluster pipelines for no reason of ours (redis/redis-py#2914, fixed by #4206); it
        # routes EVALSHA by its keys, and our scripts' keys share one slot
        return await self._pipeliner.run(
            lambda pipeline: pipeline.execute_command(
                "EVALSHA", script.sha, len(keys), *keys, *args
            ),
            lambda pipeline: pipeline.execute_command(
                "EVAL", script.script, len(keys), *keys, *args
            ),
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
        name = self._name(_BUCKET_NAMESPACE, _check_key(key))
        window_us, limit = _check_seconds(window_seconds, "window") * 1_000_000, _check_limit(limit)
        with _unavailable_on_failure():
            allowed, remaining, retry_after_us = await self._evalsha(
                self._hit, [name], [repr(window_us), limit]
            )
        return RateDecision(
            allowed=bool(allowed), remaining=int(remaining), retry_after=retry_after_us / 1_000_000
        )

    async def consume_once(self, key: str, ttl: float, issued_at: float) -> Consumption:
        key, ttl, issued_at = (
            _check_key(key),
            _check_seconds(ttl, "ttl"),
            _check_issued_at(issued_at),
        )
        with _unavailable_on_failure():
            outcome = await self._evalsha(
                self._consume_once,
                [self._markers[_group(key)], self._name(_VALUE_NAMESPACE, key)],
                [repr(time.time()), repr(issued_at), _milliseconds(ttl)],
            )
        return Consumption(outcome.decode())

    async def check_revocation(self, keys: list[str], issued_at: float) -> Revocation:
        """One script per group of ``keys`` (each atomic with its group's start), combined: any
        REVOKED wins, then any PREDATES_STORE (see the module's docstring)."""
        issued_at = _check_issued_at(issued_at)
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(_group(_check_key(key)), []).append(self._name(_VALUE_NAMESPACE, key))
        if not groups:  # nothing to look up: only whether the store began after issued_at
            groups[0] = []
        args = [repr(time.time()), repr(issued_at)]
        with _unavailable_on_failure():
            outcomes = await asyncio.gather(
                *(
                    self._evalsha(self._check_revocation, [self._markers[group], *names], args)
                    for group, names in groups.items()
                )
            )
        answers = {Revocation(outcome.decode()) for outcome in outcomes}
        for answer in (Revocation.REVOKED, Revocation.PREDATES_STORE):
            if answer in answers:
                return answer
        return Revocation.NONE

    async def store_started_at(self) -> float:
        """The latest start of any group, starting every group that has none yet: a code issued
        from then on predates no group's contents."""
        now = repr(time.time())
        with _unavailable_on_failure():
            starts = await asyncio.gather(
                *(self._evalsha(self._started_at, [marker], [now]) for marker in self._markers)
            )
        return max(float(start) for start in starts)

    async def ping(self) -> None:
        """Every primary answers (on a cluster: the nodes that serve the slots)."""
        with _unavailable_on_failure():
            if self.cluster:
                await self._redis.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                # redis-py types its commands for both clients; the asyncio one returns awaitables
                await cast("Awaitable[bool]", self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
