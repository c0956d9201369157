"""put_if_absent rates of the ephemeral store against a raw redis-py ``SET NX PX`` loop; with
--cluster, consume_once on a single Redis against the same on a Redis Cluster.

    .venv/bin/python scripts/bench/bench_store.py [--redis redis://127.0.0.1:6379/15] [--ops 20000]
    .venv/bin/python scripts/bench/bench_store.py --cluster "$(scripts/start_redis_cluster.sh)" \
        [--rounds 5] [--ops 5000]

Each measurement runs sequentially (one await at a time: latency-bound, what one request sees)
and with --concurrency operations in flight (throughput of one worker).  The baseline (raw
redis-py on the same connection settings) is measured in the same run; ratios are against it.
The memory store is shown against the same baseline for scale.  Keys are deleted afterwards.

--cluster: consume_once (the code single-use script) on the single Redis, on the cluster through
the store (its pipeliner: redis-py's ClusterPipeline, one batch per node) and on the cluster with
each script sent on its own (no pipeliner); --rounds rounds, each candidate once per round in
turn, printed as median ops/s and the spread (lowest-highest), ratios of medians against the
single Redis.  Everything runs in this one process, client and servers on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ecard.store.ephemeral import (
    _CONSUME_ONCE_SCRIPT,
    SOCKET_TIMEOUT_SECONDS,
    MemoryStore,
    RedisStore,
    _connect,
    _group,
)

PutIfAbsent = Callable[[str], Awaitable[object]]


async def rate(put_if_absent: PutIfAbsent, ops: int, concurrency: int) -> float:
    """Operations per second, each on a fresh key so every call wins."""
    run = uuid.uuid4().hex[:8]
    keys = iter(range(ops))

    async def lane() -> None:
        for n in keys:
            await put_if_absent(f"bench:{run}:{n}")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return ops / (time.perf_counter() - started)


async def main(redis_url: str, ops: int, concurrency: int) -> None:
    prefix = f"ecard-bench:{uuid.uuid4().hex[:8]}:"
    raw = aioredis.from_url(
        redis_url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    redis_store, memory_store = RedisStore(redis_url, prefix), MemoryStore()
    candidates: dict[str, PutIfAbsent] = {
        "raw redis-py SET NX PX (baseline)": lambda key: raw.set(
            prefix + key, b"1", nx=True, px=60_000
        ),
        "RedisStore.put_if_absent": lambda key: redis_store.put_if_absent(key, b"1", 60),
        "MemoryStore.put_if_absent": lambda key: memory_store.put_if_absent(key, b"1", 60),
    }
    try:
        await raw.ping()
        for call in candidates.values():  # warm connections and code paths
            await rate(call, 200, concurrency)
        for lanes in (1, concurrency):
            print(f"\n{ops} ops, {lanes} in flight")
            results = {name: await rate(call, ops, lanes) for name, call in candidates.items()}
            baseline = next(iter(results.values()))
            for name, ops_per_second in results.items():
                print(
                    f"  {name:36s} {ops_per_second:>12,.0f} ops/s  "
                    f"{ops_per_second / baseline:6.2f}x"
                )
    finally:
        keys = [key async for key in raw.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(keys), 1000):
            await raw.delete(*keys[start : start + 1000])
        await redis_store.close()
        await raw.aclose()


async def compare_cluster(
    redis_url: str, cluster_url: str, ops: int, concurrency: int, rounds: int
) -> None:
    prefix = f"ecard-bench:{uuid.uuid4().hex[:8]}:"
    single, cluster = RedisStore(redis_url, prefix), RedisStore(cluster_url, prefix)
    stores = (single, cluster)
    for store in stores:
        await store.store_started_at()
    issued_at = time.time()
    sha = cluster._consume_once.sha

    async def direct(key: str) -> object:
        name = cluster._value_key(key)
        marker = cluster._markers[_group(key)]
        args = (2, marker, name, repr(time.time()), repr(issued_at), 60_000)
        try:
            return await cluster._redis.execute_command("EVALSHA", sha, *args)
        except NoScriptError:  # a node without the script (a restart, another's SCRIPT FLUSH)
            return await cluster._redis.execute_command("EVAL", _CONSUME_ONCE_SCRIPT, *args)

    candidates: dict[str, PutIfAbsent] = {
        "single Redis: consume_once": lambda key: single.consume_once(key, 60, issued_at),
        "cluster: consume_once (pipelined)": lambda key: cluster.consume_once(key, 60, issued_at),
        "cluster: EVALSHA one by one": direct,
    }
    try:
        await cluster._redis.script_load(_CONSUME_ONCE_SCRIPT)
        for call in candidates.values():
            await rate(call, 200, concurrency)
        for lanes in (1, concurrency):
            samples: dict[str, list[float]] = {name: [] for name in candidates}
            for _ in range(rounds):
                for name, call in candidates.items():
                    samples[name].append(await rate(call, ops, lanes))
            baseline = statistics.median(next(iter(samples.values())))
            print(f"\nconsume_once, {ops} ops x {rounds} rounds, {lanes} in flight")
            for name, values in samples.items():
                median = statistics.median(values)
                print(
                    f"  {name:36s} {median:>10,.0f} ops/s  ({min(values):,.0f}-"
                    f"{max(values):,.0f})  {median / baseline:5.2f}x"
                )
    finally:
        for url, store in ((redis_url, single), (cluster_url, cluster)):
            await store.close()
            raw = _connect(url, 2.0)
            keys = [key async for key in raw.scan_iter(match=prefix + "*", count=1000)]
            for start in range(0, len(keys), 1000):
                await raw.delete(*keys[start : start + 1000])
            await raw.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cluster", help="a redis+cluster:// URL: compare consume_once")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.cluster:
        asyncio.run(
            compare_cluster(args.redis, args.cluster, args.ops, args.concurrency, args.rounds)
        )
    else:
        asyncio.run(main(args.redis, args.ops, args.concurrency))
