"""Replay across workers: a real ``ecard serve --workers 2`` on PostgreSQL and Redis; many
verifiers present the same code at once, and exactly one of them, on whichever worker, wins."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.live import LiveServer, _ok, new_channel, new_holder

pytestmark = pytest.mark.timeout(180)

WORKERS = 2
VERIFIERS = 6
CODES = 15


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"tw{uuid.uuid4().hex[:8]}:"


@pytest.fixture()
def server(migrated_postgres_url: str, redis_url: str, prefix: str) -> Iterator[LiveServer]:
    live = LiveServer.start(
        workers=WORKERS,
        env={
            "ECARD_DATABASE_URL": migrated_postgres_url,
            "ECARD_REDIS_URL": redis_url,
            "ECARD_REDIS_PREFIX": prefix,
        },
    )
    yield live
    live.stop()


def basic(client: dict) -> dict[str, str]:
    raw = f"{client['id']}:{client['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def test_exactly_one_of_many_verifiers_wins_across_workers(
    server: LiveServer, redis_url: str, prefix: str
) -> None:
    limits = httpx.Limits(max_connections=VERIFIERS * 2)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
        login = _ok(
            await http.post(
                "/operator/v1/login",
                json={"username": "admin", "password": "correct horse battery"},
            )
        )
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        channel = await new_channel(http, admin, "app")
        holder_token, _ = await new_holder(http, admin, channel)
        verifiers = [
            basic(
                _ok(
                    await http.post(
                        "/operator/v1/clients",
                        headers=admin,
                        json={
                            "kind": "verifier",
                            "name": f"hall-{i}",
                            "entitlements": ["masked_name"],
                        },
                    )
                )
            )
            for i in range(VERIFIERS)
        ]
        holder = {"Authorization": f"Bearer {holder_token}"}
        codes = [
            _ok(await http.post("/holder/v1/codes", headers=holder))["code"] for _ in range(CODES)
        ]

        async def present(code: str, verifier: dict[str, str]) -> dict:
            return _ok(
                await http.post("/verifier/v1/verifications", json={"code": code}, headers=verifier)
            )

        # every code presented by every verifier, all at once
        results = await asyncio.gather(*(present(code, v) for code in codes for v in verifiers))
    for index in range(CODES):
        of_code = results[index * VERIFIERS : (index + 1) * VERIFIERS]
        assert [r["valid"] for r in of_code].count(True) == 1, of_code
        assert {r["reason"] for r in of_code if not r["valid"]} == {"already_used"}
    # the single-use markers really live in the shared Redis
    markers = redis.Redis.from_url(redis_url).keys(f"{prefix}*code:*")
    assert len(markers) == CODES
