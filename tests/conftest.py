"""Shared test fixtures: every fixture more than one test package uses is defined here, and a test
takes it by parameter (never by importing it). Plain helpers live in ``tests/helpers.py``; a
package's own fixtures live in its ``conftest.py``.

Real components (PostgreSQL, Redis, an EVM node, Chromium, pcscd) are used wherever users would
have them.  Outside CI a missing component skips its tests with a reason saying how to get it;
under CI (``CI=true``) the same absence is a failure, so a green CI run means they really ran.

The service under test runs on both storage backends: ``settings`` (and so ``client`` and
``world``) is parametrised embedded (SQLite file + in-process store) and production-like
(PostgreSQL + Redis).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.helpers import (
    CHROMIUM,
    World,
    admin_sql,
    database_url,
    lifespan_of,
    platform_of,
    port_open,
    require,  # also imported from here by some test modules
)

if TYPE_CHECKING:
    from ecard.settings import Settings

POSTGRES_URL = os.environ.get(
    "ECARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ECARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: PgBouncer in transaction pooling in front of the PostgreSQL above (scripts/start_pgbouncer.sh)
PGBOUNCER_URL = os.environ.get(
    "ECARD_TEST_PGBOUNCER_URL", "postgresql://postgres@127.0.0.1:6432/test?pool_mode=transaction"
)
#: the test modules whose ``settings`` also run through PgBouncer (the ``pgbouncer`` backend):
#: the database-heavy ones, not the whole suite (docs/operations.md, "PgBouncer")
PGBOUNCER_LEG = frozenset(
    {
        "tests/api/test_registry.py",
        "tests/oidc/test_flow_authlib.py",
        "tests/consent/test_flow.py",
        "tests/consent/test_ledger.py",
    }
)
#: a Redis Cluster; scripts/start_redis_cluster.sh starts one and prints this URL
REDIS_CLUSTER_URL = os.environ.get(
    "ECARD_TEST_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
)
#: the test modules whose ``settings`` also run on PostgreSQL and a Redis Cluster (the ``cluster``
#: backend): the store-heavy ones (codes, holder sessions and their revocation, login), not all
CLUSTER_LEG = frozenset(
    {
        "tests/codes_service/test_codes.py",
        "tests/holder_sessions/test_session_lifecycle.py",
        "tests/oidc/test_device.py",
    }
)
#: the password of every operator the ``world`` fixture creates
OPERATOR_PASSWORD = "correct horse battery"


# --- real components ------------------------------------------------------------------------


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
def redis_cluster_url() -> str:
    seed = REDIS_CLUSTER_URL.split("://", 1)[-1].split(",")[0]
    require(
        port_open(f"redis://{seed}", 7000),
        f"a Redis Cluster at {REDIS_CLUSTER_URL}",
        "start one with scripts/start_redis_cluster.sh or set ECARD_TEST_REDIS_CLUSTER_URL",
    )
    return REDIS_CLUSTER_URL


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    require(
        port_open(POSTGRES_URL, 5432),
        f"PostgreSQL at {POSTGRES_URL}",
        "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
        "or set ECARD_TEST_POSTGRES_URL",
    )
    return POSTGRES_URL


@pytest.fixture()
def fresh_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"ecard_t_{uuid.uuid4().hex[:12]}"
    admin_sql(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield database_url(postgres_server_url, name)
    admin_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pgbouncer_server_url(postgres_server_url: str) -> str:
    require(
        port_open(PGBOUNCER_URL, 6432),
        f"PgBouncer at {PGBOUNCER_URL}",
        "start it with scripts/start_pgbouncer.sh or set ECARD_TEST_PGBOUNCER_URL",
    )
    return PGBOUNCER_URL


@pytest.fixture()
def pgbouncer_migrated_url(pgbouncer_server_url: str, migrated_postgres_url: str) -> str:
    """``migrated_postgres_url``'s database, reached through PgBouncer (transaction pooling)."""
    return database_url(pgbouncer_server_url, urlparse(migrated_postgres_url).path.lstrip("/"))


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The modules of ``PGBOUNCER_LEG`` run ``settings`` on a third backend, ``pgbouncer``; those
    of ``CLUSTER_LEG`` on ``cluster`` (marked ``redis_cluster``)."""
    path = metafunc.definition.path.relative_to(Path(__file__).parent.parent).as_posix()
    legs: list[Any] = ["pgbouncer"] if path in PGBOUNCER_LEG else []
    if path in CLUSTER_LEG:
        legs.append(pytest.param("cluster", marks=pytest.mark.redis_cluster))
    if "settings" in metafunc.fixturenames and legs:
        metafunc.definition.add_marker(
            pytest.mark.parametrize("settings", ["embedded", "postgres", *legs], indirect=True)
        )


@pytest.fixture(scope="session")
def migrated_postgres_template(postgres_server_url: str) -> Iterator[str]:
    """A database with every migration applied, made once per test process: copying it is a
    file copy inside PostgreSQL, several times faster than migrating each test's database."""
    import asyncio

    from ecard.store import db

    name = f"ecard_tpl_{uuid.uuid4().hex[:12]}"
    admin_sql(postgres_server_url, f'CREATE DATABASE "{name}"')

    async def migrate() -> None:
        engine = db.make_engine(database_url(postgres_server_url, name))
        try:
            await db.migrate(engine)
        finally:
            await db.close_engine(engine)

    asyncio.run(migrate())
    yield name
    admin_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def migrated_postgres_url(
    postgres_server_url: str, migrated_postgres_template: str
) -> Iterator[str]:
    """A new PostgreSQL database with the schema in place (the service's own migrations), for one
    test, dropped afterwards."""
    name = f"ecard_t_{uuid.uuid4().hex[:12]}"
    admin_sql(
        postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{migrated_postgres_template}"'
    )
    yield database_url(postgres_server_url, name)
    admin_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


# --- the service under test -----------------------------------------------------------------


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A key directory with a keyring for two issuers (330000, 110000), shared by the session."""
    from ecard.crypto.keyring import Keyring
    from ecard.store.keyfiles import save_keyring

    directory = tmp_path_factory.mktemp("keys")
    save_keyring(directory, Keyring.create(["330000", "110000"]))
    return str(directory)


@pytest.fixture(params=["embedded", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, keys_dir: str) -> Settings:
    """The service's settings on one storage backend: ``embedded`` (a SQLite file and the
    in-process store) or ``postgres`` (a migrated PostgreSQL database and Redis); ``pgbouncer``
    (the same through PgBouncer) in the modules of ``PGBOUNCER_LEG``; ``cluster`` (PostgreSQL and
    a Redis Cluster) in those of ``CLUSTER_LEG``."""
    from ecard.settings import load_settings

    environ = {"ECARD_KEYS_DIR": keys_dir, "ECARD_LOG_JSON": "true", "ECARD_LOG_LEVEL": "WARNING"}
    if request.param == "embedded":
        environ["ECARD_DATABASE_URL"] = f"sqlite:///{tmp_path}/ecard.db"
    else:
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue(
            "pgbouncer_migrated_url" if request.param == "pgbouncer" else "migrated_postgres_url"
        )
        environ["ECARD_REDIS_URL"] = request.getfixturevalue(
            "redis_cluster_url" if request.param == "cluster" else "redis_url"
        )
        environ["ECARD_REDIS_PREFIX"] = f"t{uuid.uuid4().hex[:10]}:"
    return load_settings(environ)


@pytest.fixture()
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app, its lifespan and its requests all in the test's event loop (Litestar's test client
    would run the lifespan in another thread's loop, which asyncpg pools do not allow), so tests
    may also call services directly on ``platform_of(client)``."""
    from ecard.app import create_app
    from ecard.platform import open_platform

    platform = await open_platform(settings, migrate=True)
    try:
        app = create_app(settings, platform=platform)
        async with (
            lifespan_of(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"
            ) as test_client,
        ):
            test_client.app = app  # type: ignore[attr-defined]
            yield test_client
    finally:
        await platform.close()


@pytest.fixture()
async def world(client: httpx.AsyncClient) -> World:
    """Operators of each role (logged in), a channel and a department, on ``client``'s app."""
    from ecard.registry.service import AccessService

    access = AccessService(platform_of(client))
    tokens = {}
    for role in ("admin", "registry_admin", "auditor", "readonly"):
        username = f"{role}-{uuid.uuid4().hex[:6]}"
        await access.create_operator(username, OPERATOR_PASSWORD, role)
        response = await client.post(
            "/operator/v1/login", json={"username": username, "password": OPERATOR_PASSWORD}
        )
        assert response.status_code == 200, response.text
        tokens[role] = response.json()["access_token"]
    w = World(client=client, tokens=tokens, channel={}, department={})
    w.channel = await w.new_client("channel")
    w.department = await w.new_client("department")
    return w


# --- a real browser ---------------------------------------------------------------------------


@pytest.fixture()
async def browser_page() -> AsyncIterator[Any]:
    """A page of headless Chromium (Debian's, no browser download), closed after the test; the
    module that uses it starts the server the page visits."""
    require(shutil.which("chromium") is not None, "Chromium", "run scripts/install_browser.sh")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(
            False, "playwright", "pip install 'playwright>=1.49,<2' (no browser download needed)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        page = await browser.new_page(locale="zh-CN")
        yield page
        await browser.close()
