"""Shared test fixtures.

Real components (PostgreSQL, Redis, an EVM node, Chromium, pcscd) are used wherever users would
have them.  Outside CI a missing component skips its tests with a reason saying how to get it;
under CI (``CI=true``) the same absence is a failure, so a green CI run means they really ran.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

POSTGRES_URL = os.environ.get("ECARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ECARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require(available: bool, what: str, how: str) -> None:
    """Skip (locally) or fail (under CI) when a real component is missing."""
    if available:
        return
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"CI requires {message}", pytrace=False)
    pytest.skip(message)


def port_open(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), 1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    require(
        port_open(REDIS_URL, 6379),
        f"Redis at {REDIS_URL}",
        "start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''` "
        "or set ECARD_TEST_REDIS_URL",
    )
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    require(
        port_open(POSTGRES_URL, 5432),
        f"PostgreSQL at {POSTGRES_URL}",
        "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
        "or set ECARD_TEST_POSTGRES_URL",
    )
    return POSTGRES_URL


def _admin(url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture()
def fresh_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"ecard_t_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield urlparse(postgres_server_url)._replace(path=f"/{name}").geturl()
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
