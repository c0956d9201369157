"""The store on a Redis Cluster, where a cluster differs from one Redis: keys spread over every
primary, a primary that loses its keys fails closed for exactly the keys it held, a failover that
loses acknowledged writes never lets a code be accepted twice, and through HTTP: 50 verifiers
racing on one code across worker processes, and a primary failing over under traffic (503 with
``Retry-After`` meanwhile, then recovery).

The shared cluster is scripts/start_redis_cluster.sh's (``ECARD_TEST_REDIS_CLUSTER_URL``); the
failover tests start their own on other ports (``ECARD_TEST_FAILOVER_BASE_PORT``, 7100..7105) and
stop it afterwards, so the shared one is never disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ecard.store.ephemeral import (
    Consumption,
    RedisStore,
    StoreUnavailable,
    _connect,
)
from tests.helpers import basic, port_open, require
from tests.live import LiveServer, _ok, new_channel, new_holder

pytestmark = pytest.mark.redis_cluster

SCRIPT = Path(__file__).parents[2] / "scripts" / "start_redis_cluster.sh"
FAILOVER_BASE_PORT = int(os.environ.get("ECARD_TEST_FAILOVER_BASE_PORT", "7100"))


def cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


@pytest.fixture()
def prefix() -> str:
    return f"ecard-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture()
async def cluster_store(redis_cluster_url: str, prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_cluster_url, prefix)
    await store.store_started_at()
    yield store
    await store.close()
    raw = _connect(redis_cluster_url, 2.0)
    keys = [key async for key in raw.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


async def keys_per_primary(store: RedisStore, prefix: str) -> dict[str, list[bytes]]:
    per_node: dict[str, list[bytes]] = {}
    for node in store._redis.get_primaries():
        keys = [
            key
            async for key in store._redis.scan_iter(
                match=prefix + "*", count=1000, target_nodes=node
            )
        ]
        per_node[node.name] = keys
    return per_node


async def test_keys_and_their_start_markers_spread_over_every_primary(
    cluster_store: RedisStore, prefix: str
) -> None:
    issued_at = time.time()
    outcomes = await asyncio.gather(
        *(cluster_store.consume_once(f"code:{n}", 30, issued_at) for n in range(900))
    )
    assert set(outcomes) == {Consumption.FIRST_USE}
    per_node = await keys_per_primary(cluster_store, prefix)
    assert len(per_node) == 3
    for keys in per_node.values():
        codes = [key for key in keys if b"}v:code:" in key]
        markers = [key for key in keys if key.endswith(b"m:started-at")]
        assert 200 < len(codes) < 400, {name: len(k) for name, k in per_node.items()}
        assert 60 < len(markers) < 110, "each primary holds the markers of its own groups"


async def test_a_primary_that_lost_its_keys_fails_closed_for_those_keys_only(
    cluster_store: RedisStore, redis_cluster_url: str, prefix: str
) -> None:
    issued_at = time.time()
    await asyncio.gather(
        *(cluster_store.consume_once(f"code:{n}", 30, issued_at) for n in range(300))
    )
    lost_node = cluster_store._redis.get_primaries()[0]
    lost = {
        key
        async for key in cluster_store._redis.scan_iter(
            match=prefix + "*", count=1000, target_nodes=lost_node
        )
    }
    raw = _connect(redis_cluster_url, 2.0)
    try:
        await raw.delete(*lost)  # this test's keys on that primary, as a restart without data
    finally:
        await raw.aclose()
    await asyncio.sleep(0.01)
    again = await asyncio.gather(
        *(cluster_store.consume_once(f"code:{n}", 30, issued_at) for n in range(300))
    )
    for n, outcome in enumerate(again):
        held_by_lost = cluster_store._value_key(f"code:{n}").encode() in lost
        expected = Consumption.PREDATES_STORE if held_by_lost else Consumption.ALREADY_USED
        assert outcome is expected, n
    assert Consumption.PREDATES_STORE in again and Consumption.ALREADY_USED in again


# --- a cluster of this module's own, for failovers ------------------------------------------


@dataclass
class OwnCluster:
    url: str
    state: Path
    ports: list[int]

    def pid(self, port: int) -> int:
        return int((self.state / str(port) / "redis.pid").read_text())

    def role(self, port: int) -> str:
        return cli(port, "role").split("\n", 1)[0].strip()

    def replica_of(self, primary: int) -> int:
        primary_id = cli(primary, "cluster", "myid").strip()
        for line in cli(primary, "cluster", "nodes").splitlines():
            fields = line.split()
            if "slave" in fields[2] and fields[3] == primary_id:
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"no replica of {primary}")

    def wait_ok(self, port: int, deadline: float = 60) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if "cluster_state:ok" in cli(port, "cluster", "info"):
                return
            time.sleep(0.1)
        raise AssertionError(f"cluster not ok on {port}")


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnCluster]:
    ports = list(range(FAILOVER_BASE_PORT, FAILOVER_BASE_PORT + 6))
    require(
        not any(port_open(f"redis://127.0.0.1:{port}", port) for port in ports),
        f"free ports {ports[0]}..{ports[-1]} for a cluster of the failover tests",
        "free them or set ECARD_TEST_FAILOVER_BASE_PORT",
    )
    state = tmp_path_factory.mktemp("failover-cluster")
    started = subprocess.run(
        [str(SCRIPT), str(state), str(ports[0])],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ECARD_CLUSTER_NODE_TIMEOUT": "1000"},
    )
    try:
        assert started.returncode == 0, started.stderr
        yield OwnCluster(started.stdout.strip(), state, ports)
    finally:
        for port in ports:  # a stopped node would not hear SIGTERM
            pid = (state / str(port) / "redis.pid").read_text().strip()
            if pid:
                with contextlib.suppress(ProcessLookupError):  # a test killed it
                    os.kill(int(pid), signal.SIGCONT)
        subprocess.run([str(SCRIPT), "--stop", str(state)], check=False, timeout=30)


def primary_of(store: RedisStore, key: str) -> int:
    return int(store._redis.get_node_from_key(store._value_key(key)).port)


async def test_a_failover_that_lost_a_used_code_still_refuses_it(
    own_cluster: OwnCluster, prefix: str
) -> None:
    """The replica is cut off, a code is used on its primary, the primary dies, the replica takes
    over without that write: the code's marker is really gone, and the code is still refused."""
    store = RedisStore(own_cluster.url, prefix)
    await store.store_started_at()
    primary = primary_of(store, "code:lost")
    replica = own_cluster.replica_of(primary)
    issued_at = time.time()
    assert await store.consume_once("code:kept", 30, issued_at) is Consumption.FIRST_USE
    os.kill(own_cluster.pid(replica), signal.SIGSTOP)
    cli(primary, "client", "kill", "type", "replica")
    try:
        assert await store.consume_once("code:lost", 30, issued_at) is Consumption.FIRST_USE
    finally:
        os.kill(own_cluster.pid(primary), signal.SIGSTOP)
        os.kill(own_cluster.pid(replica), signal.SIGCONT)
    try:
        assert "OK" in cli(replica, "cluster", "failover", "takeover")
        own_cluster.wait_ok(replica)
        raw = _connect(f"redis://127.0.0.1:{replica}/0", 2.0)
        assert await raw.get(store._value_key("code:lost")) is None, "the write was lost"
        await raw.aclose()

        outcomes = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(outcomes) < 3:
            try:
                outcomes.append(await store.consume_once("code:lost", 30, issued_at))
            except StoreUnavailable:
                await asyncio.sleep(0.2)  # the client learns the new topology
        assert outcomes and Consumption.FIRST_USE not in outcomes, outcomes
        assert await store.consume_once("code:kept", 30, issued_at) is not Consumption.FIRST_USE
        assert await store.consume_once("code:new", 30, time.time()) is Consumption.FIRST_USE
    finally:
        os.kill(own_cluster.pid(primary), signal.SIGCONT)  # it rejoins as the replica
        await store.close()
    own_cluster.wait_ok(own_cluster.ports[0])


# --- through HTTP, across worker processes ----------------------------------------------------


async def seeded(
    http: httpx.AsyncClient, verifiers: int
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A holder's authorization and ``verifiers`` verifier clients' Basic authorizations."""
    login = _ok(
        await http.post(
            "/operator/v1/login", json={"username": "admin", "password": "correct horse battery"}
        )
    )
    admin = {"Authorization": f"Bearer {login['access_token']}"}
    channel = await new_channel(http, admin, "app")
    holder_token, _ = await new_holder(http, admin, channel)

    async def verifier(n: int) -> dict[str, str]:
        created = _ok(
            await http.post(
                "/operator/v1/clients",
                headers=admin,
                json={"kind": "verifier", "name": f"hall-{n}", "entitlements": ["masked_name"]},
            )
        )
        return basic(created["id"], created["client_secret"])

    halls = [await verifier(n) for n in range(verifiers)]
    return {"Authorization": f"Bearer {holder_token}"}, halls


@pytest.fixture()
def cluster_server(
    migrated_postgres_url: str, redis_cluster_url: str, prefix: str
) -> Iterator[LiveServer]:
    live = LiveServer.start(
        workers=2,
        env={
            "ECARD_DATABASE_URL": migrated_postgres_url,
            "ECARD_REDIS_URL": redis_cluster_url,
            "ECARD_REDIS_PREFIX": prefix,
        },
    )
    yield live
    live.stop()


@pytest.mark.timeout(300)
async def test_fifty_verifiers_racing_on_one_code_across_workers_accept_it_once(
    cluster_server: LiveServer, redis_cluster_url: str, prefix: str
) -> None:
    verifiers, codes = 50, 3
    limits = httpx.Limits(max_connections=verifiers)
    async with httpx.AsyncClient(base_url=cluster_server.url, timeout=60, limits=limits) as http:
        holder, halls = await seeded(http, verifiers)
        for _ in range(codes):
            code = _ok(await http.post("/holder/v1/codes", headers=holder))["code"]
            answers = await asyncio.gather(
                *(
                    http.post("/verifier/v1/verifications", json={"code": code}, headers=hall)
                    for hall in halls
                )
            )
            assert {answer.status_code for answer in answers} == {200}
            results = [answer.json() for answer in answers]
            assert [result["valid"] for result in results].count(True) == 1, results
            assert Counter(r["reason"] for r in results if not r["valid"]) == {
                "already_used": verifiers - 1
            }
    raw = _connect(redis_cluster_url, 2.0)
    markers = [key async for key in raw.scan_iter(match=f"{prefix}*}}v:code:*", count=1000)]
    await raw.delete(*[key async for key in raw.scan_iter(match=f"{prefix}*", count=1000)])
    await raw.aclose()
    assert len(markers) == codes, "the single-use markers live in the cluster"


@pytest.mark.timeout(300)
async def test_a_primary_failing_over_under_traffic_answers_503_never_accepts_twice(
    own_cluster: OwnCluster, migrated_postgres_url: str, prefix: str
) -> None:
    live = LiveServer.start(
        workers=2,
        env={
            "ECARD_DATABASE_URL": migrated_postgres_url,
            "ECARD_REDIS_URL": own_cluster.url,
            "ECARD_REDIS_PREFIX": prefix,
        },
    )
    accepted: Counter[str] = Counter()
    unavailable: list[httpx.Response] = []
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            holder, halls = await seeded(http, 2)

            async def present(code: str, hall: dict[str, str]) -> None:
                answer = await http.post(
                    "/verifier/v1/verifications", json={"code": code}, headers=hall
                )
                if answer.status_code == 503:
                    unavailable.append(answer)
                    return
                assert answer.status_code == 200, answer.text
                if answer.json()["valid"]:
                    accepted[code] += 1

            codes = [
                _ok(await http.post("/holder/v1/codes", headers=holder))["code"] for _ in range(40)
            ]
            await asyncio.gather(*(present(code, halls[0]) for code in codes[:20]))
            assert sum(accepted.values()) == 20

            primary = own_cluster.ports[0]
            if own_cluster.role(primary) != "master":
                primary = next(p for p in own_cluster.ports if own_cluster.role(p) == "master")
            os.kill(own_cluster.pid(primary), signal.SIGKILL)  # a replica takes over in ~2 s
            survivor = next(p for p in own_cluster.ports if p != primary)
            ended = time.monotonic() + 60
            while time.monotonic() < ended:
                # every code, used or not, presented again and again while the cluster heals
                await asyncio.gather(*(present(code, halls[n % 2]) for n, code in enumerate(codes)))
                if "cluster_state:ok" in cli(survivor, "cluster", "info") and unavailable:
                    break
            assert unavailable, "requests to the lost primary's slots were answered 503"
            for answer in unavailable:
                assert answer.headers["retry-after"].isdigit()
                assert answer.json()["code"] == "store_unavailable"

            recovered = False
            ended = time.monotonic() + 60
            while not recovered and time.monotonic() < ended:
                fresh = (await http.post("/holder/v1/codes", headers=holder)).json().get("code")
                if fresh:
                    answer = await http.post(
                        "/verifier/v1/verifications", json={"code": fresh}, headers=halls[0]
                    )
                    recovered = answer.status_code == 200 and answer.json()["valid"]
                await asyncio.sleep(0.3)
            assert recovered, "fresh codes verify again once the replica has taken over"
            await asyncio.gather(*(present(code, halls[1]) for code in codes))
    finally:
        live.stop()
    assert accepted and max(accepted.values()) == 1, accepted
