"""Fixtures of the ledger tests: a migrated database (SQLite file, or a fresh PostgreSQL database
for the tests that ask for it), keys, a registered writer and a ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from ledger import Ledger
from ledger.migrations import migrate
from tests.ledger.helpers import WRITER_ID


def postgres_engine(url: str) -> PostgresEngine:
    parsed = urlparse(url)
    return PostgresEngine(
        config={
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 5432,
            "user": unquote(parsed.username or "postgres"),
            "password": unquote(parsed.password or "") or None,
            "database": parsed.path.lstrip("/"),
        }
    )


async def sqlite_engine(path: Path) -> SQLiteEngine:
    engine = SQLiteEngine(path=str(path), timeout=30)
    await engine.run_ddl("PRAGMA journal_mode=WAL")
    return engine


@pytest.fixture()
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await sqlite_engine(tmp_path / "ledger.db")
    await migrate(engine)
    yield engine


@pytest.fixture()
async def pg_engine(fresh_postgres_url: str) -> AsyncIterator[Engine]:
    engine = postgres_engine(fresh_postgres_url)
    await engine.start_connection_pool(min_size=1, max_size=4)
    await migrate(engine)
    yield engine
    await engine.close_connection_pool()


@pytest.fixture(scope="session")
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def writer_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture()
async def ledger(
    engine: Engine, log_key: Ed25519PrivateKey, writer_key: Ed25519PrivateKey
) -> Ledger:
    ledger = Ledger(engine, log_key)
    await ledger.register_writer(WRITER_ID, writer_key.public_key())
    return ledger
