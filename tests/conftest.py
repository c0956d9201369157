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

POSTGRES_URL = os.environ.get(
    "ECARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
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
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
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


def _database_url(server_url: str, name: str) -> str:
    return urlparse(server_url)._replace(path=f"/{name}").geturl()


@pytest.fixture()
def fresh_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"ecard_t_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield _database_url(postgres_server_url, name)
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_postgres_template(postgres_server_url: str) -> Iterator[str]:
    """A database with every migration applied, made once per test process: copying it is a
    file copy inside PostgreSQL, several times faster than migrating each test's database."""
    import asyncio

    from ecard.store import db

    name = f"ecard_tpl_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')

    async def migrate() -> None:
        engine = db.make_engine(_database_url(postgres_server_url, name))
        try:
            await db.migrate(engine)
        finally:
            await db.close_engine(engine)

    asyncio.run(migrate())
    yield name
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def migrated_postgres_url(
    postgres_server_url: str, migrated_postgres_template: str
) -> Iterator[str]:
    """A new PostgreSQL database with the schema in place (the service's own migrations), for one
    test, dropped afterwards."""
    name = f"ecard_t_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{migrated_postgres_template}"')
    yield _database_url(postgres_server_url, name)
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing() -> Iterator[None]:
    """Nearly every test creates operators and logs them in: argon2id at the production cost (tens
    of ms a hash) would be a large part of the suite's time.  A hash records its own cost, so
    checking follows whatever made it; the servers tests start as processes keep the production
    cost."""
    from argon2 import PasswordHasher, Type

    from ecard.crypto import passwords

    production = passwords._HASHER
    passwords._HASHER = PasswordHasher(
        time_cost=1, memory_cost=1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
    )
    yield
    passwords._HASHER = production
