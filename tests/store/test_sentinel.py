"""``redis+sentinel://`` finds the primary through Sentinel: a primary and one Sentinel of this
test's own on free loopback ports (Debian's redis-server runs both)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecard.store.ephemeral import Consumption, RedisStore, open_store
from tests.helpers import port_open, require
from tests.live import free_port

pytestmark = pytest.mark.redis


@pytest.fixture()
def sentinel_url(tmp_path: Path) -> Iterator[str]:
    require(
        shutil.which("redis-server") is not None,
        "redis-server",
        "sudo apt-get install redis-server",
    )
    primary, sentinel = free_port(), free_port()
    (tmp_path / "sentinel.conf").write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor ecard-store 127.0.0.1 {primary} 1\n"
    )
    processes = [
        subprocess.Popen(
            ["redis-server", "--port", str(primary), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            ["redis-server", str(tmp_path / "sentinel.conf"), "--sentinel"],
            stdout=subprocess.DEVNULL,
        ),
    ]
    try:
        deadline = time.monotonic() + 15
        while not all(port_open(f"redis://127.0.0.1:{p}", p) for p in (primary, sentinel)):
            assert time.monotonic() < deadline, "redis-server or its Sentinel did not start"
            time.sleep(0.05)
        yield f"redis+sentinel://127.0.0.1:{sentinel}/ecard-store/0"
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


async def test_the_store_works_on_the_primary_sentinel_names(sentinel_url: str) -> None:
    store = open_store(sentinel_url, "ecard-test:")
    try:
        assert isinstance(store, RedisStore) and not store.cluster
        await store.ping()
        await store.store_started_at()
        issued_at = time.time()
        assert await store.consume_once("code:1", 30, issued_at) is Consumption.FIRST_USE
        assert await store.consume_once("code:1", 30, issued_at) is Consumption.ALREADY_USED
        await store.put("k", b"v", 30)
        assert await store.get("k") == b"v"
    finally:
        await store.close()


def test_the_cluster_script_and_the_benchmark_explain_themselves() -> None:
    root = Path(__file__).parents[2]
    script = subprocess.run(
        [str(root / "scripts/start_redis_cluster.sh"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cluster_state:ok" in script.stdout and "ECARD_TEST_REDIS_CLUSTER_URL" in script.stdout
    bench = subprocess.run(
        [sys.executable, "scripts/bench/bench_store.py", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--cluster" in bench.stdout
