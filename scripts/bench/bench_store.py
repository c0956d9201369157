"""put_if_absent rates of the ephemeral store against a raw redis-py ``SET NX PX`` loop.

    .venv/bin/python scripts/bench/bench_store.py [--redis redis://127.0.0.1:6379/15] [--ops 20000]

Each measurement runs sequentially (one await at a time: latency-bound, what one request sees)
and with --concurrency operations in flight (throughput of one worker).  The baseline (raw
redis-py on the same connection settings) is measured in the same run; ratios are against it.
The memory store is shown against the same baseline for scale.  Keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from ecard.store.ephemeral import SOCKET_TIMEOUT_SECONDS, MemoryStore, RedisStore

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.ops, args.concurrency))
