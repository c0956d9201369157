"""The relational database through piccolo: SQLite file by default, PostgreSQL in production.

One engine per process, bound to every table of every app, and migrations run through piccolo's
own migration manager so the same migration files serve SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import aiosqlite

from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import AppConfig
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.table import Table

#: Piccolo apps, in migration order (each ``piccolo_app`` module holds an ``APP_CONFIG``).
APP_MODULES = ["ecard.registry.piccolo_app", "ledger.piccolo_app", "ecard.oidc.piccolo_app", "ecard.codes.piccolo_app", "ecard.consent.piccolo_app", "ecard.terminal.piccolo_app"]

PICCOLO_CONF = "ecard.piccolo_conf"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; clients get 503 with Retry-After."""


class MigrationFailed(RuntimeError):
    pass


def app_configs() -> list[AppConfig]:
    return [importlib.import_module(module).APP_CONFIG for module in APP_MODULES]


def all_tables() -> list[type[Table]]:
    return [table for config in app_configs() for table in config.table_classes]


class SharedConnectionSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine opens a connection (and a thread) for every query outside a
    transaction, which caps the embedded service at a few hundred queries per second.  This one
    keeps one connection per event loop for those single statements; transactions still get a
    connection of their own, as in piccolo."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shared: dict[asyncio.AbstractEventLoop, tuple[aiosqlite.Connection, asyncio.Lock]] = {}

    async def _connection(self) -> tuple[aiosqlite.Connection, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if loop not in self._shared:
            connection = await self.get_connection()
            self._shared = {l: c for l, c in self._shared.items() if not l.is_closed()}
            self._shared[loop] = (connection, asyncio.Lock())
        return self._shared[loop]

    async def _run_in_new_connection(
        self, query: str, args: list[Any] | None = None, query_type: str = "generic", table: Any = None
    ) -> Any:
        connection, lock = await self._connection()
        async with lock:
            try:
                async with connection.execute(query, args or []) as cursor:
                    rows = await cursor.fetchall()
                await connection.commit()
            except BaseException:
                await connection.rollback()
                raise
        return rows

    async def close(self) -> None:
        for loop, (connection, _) in list(self._shared.items()):
            if loop is asyncio.get_running_loop():
                await connection.close()
                del self._shared[loop]


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SharedConnectionSQLiteEngine(path=str(path), timeout=30, check_same_thread=False)
    parsed = urlparse(database_url)
    return PostgresEngine(
        config={
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 5432,
            "user": unquote(parsed.username or "postgres"),
            "password": unquote(parsed.password or "") or None,
            "database": parsed.path.lstrip("/") or "postgres",
        }
    )


def bind_engine(engine: Engine) -> None:
    """Point every table (and piccolo's migration bookkeeping) at ``engine``."""
    os.environ["PICCOLO_CONF"] = PICCOLO_CONF
    importlib.import_module(PICCOLO_CONF).DB = engine
    for table in [*all_tables(), Migration]:
        table._meta.db = engine


async def prepare_sqlite(engine: Engine) -> None:
    """WAL lets readers run beside the writer; the busy timeout queues writers instead of failing."""
    if isinstance(engine, SQLiteEngine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")


async def migrate(engine: Engine) -> None:
    """Apply every pending migration of every app, in order."""
    bind_engine(engine)
    await prepare_sqlite(engine)
    for config in app_configs():
        result = await run_forwards(app_name=config.app_name)
        if not result.success:
            raise MigrationFailed(f"{config.app_name}: {result.message}")


async def close_engine(engine: Engine) -> None:
    if isinstance(engine, SharedConnectionSQLiteEngine):
        await engine.close()
    elif isinstance(engine, PostgresEngine) and engine.pool:
        await engine.close_connection_pool()


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique/primary-key conflict on SQLite or PostgreSQL."""
    import sqlite3

    try:
        from asyncpg.exceptions import UniqueViolationError
    except ImportError:  # pragma: no cover - asyncpg ships with piccolo[postgres]
        UniqueViolationError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, UniqueViolationError):
        return True
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc).upper()


async def ping(engine: Engine) -> None:
    try:
        await engine.run_ddl("SELECT 1")
    except Exception as exc:  # every driver has its own error types
        raise DatabaseUnavailable(str(exc)) from exc
