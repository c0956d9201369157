"""The relational database through piccolo: SQLite file by default, PostgreSQL in production.

One engine per process, bound to every table of every app, and migrations run through piccolo's
own migration manager so the same migration files serve SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import aiosqlite
import asyncpg
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import AppConfig
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType
from piccolo.table import Table

PICCOLO_CONF = "ecard.piccolo_conf"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; clients get 503 with Retry-After."""


class MigrationFailed(RuntimeError):
    pass


def app_configs() -> list[AppConfig]:
    """Every domain's piccolo app, in migration order (the order of ``ecard.domains.DOMAINS``)."""
    # imported here, not above: the domains import the store
    from ecard.domains import DOMAINS

    return [domain.piccolo_app for domain in DOMAINS if domain.piccolo_app is not None]


def all_tables() -> list[type[Table]]:
    return [table for config in app_configs() for table in config.table_classes]


class SharedConnectionSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine opens a connection (and a thread) for every query outside a
    transaction, which caps the embedded service at a few hundred queries per second.  This one
    keeps two connections per event loop for those single statements, one for reads and one for
    writes; transactions still get a connection of their own, as in piccolo.

    Both are in autocommit mode (piccolo's ``isolation_level=None``), so each statement is its
    own transaction: statements of concurrent requests queue on a connection's thread back to
    back, one thread hop each, with no lock held across the hop.  Reads have their own connection
    so that they never wait behind a write's commit (WAL lets them run beside it); each read
    starts a fresh snapshot, so it sees every write that completed before it was sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shared: dict[
            asyncio.AbstractEventLoop, tuple[aiosqlite.Connection, aiosqlite.Connection]
        ] = {}
        self._private = False

    async def get_connection(self) -> aiosqlite.Connection:
        if not self._private:  # before SQLite first opens (and so creates) the file
            make_private_sqlite_file(Path(self.path))
            self._private = True
        return await super().get_connection()

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.immediate,
        allow_nested: bool = True,
    ) -> SQLiteTransaction:
        """IMMEDIATE by default (as piccolo advises for writes, and as the ledger does): the
        service's transactions write, and a DEFERRED one that read first cannot become the writer
        once another connection committed after its snapshot; SQLite then answers "database is
        locked" at once instead of waiting out the busy timeout (a CI run met it)."""
        return super().transaction(transaction_type=transaction_type, allow_nested=allow_nested)

    async def _connections(self) -> tuple[aiosqlite.Connection, aiosqlite.Connection]:
        loop = asyncio.get_running_loop()
        if loop not in self._shared:
            pair = (await self.get_connection(), await self.get_connection())
            self._shared = {l: c for l, c in self._shared.items() if not l.is_closed()}
            self._shared[loop] = pair
        return self._shared[loop]

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        reader, writer = await self._connections()
        read = query.lstrip()[:6].upper() == "SELECT"
        return await (reader if read else writer).execute_fetchall(query, args or [])

    async def close(self) -> None:
        for loop, pair in list(self._shared.items()):
            if loop is asyncio.get_running_loop():
                for connection in pair:
                    await connection.close()
                del self._shared[loop]


def is_database_unavailable(exc: BaseException, _depth: int = 0) -> bool:
    """True when ``exc`` means "PostgreSQL cannot serve this now" (down, restarting, the connection
    was cut, no connection slots), not a fault of the query itself."""
    import asyncpg

    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(
        exc,
        (
            asyncpg.exceptions.PostgresConnectionError,  # 08xxx, e.g. connection does not exist
            # 57xxx: admin shutdown, crash, cannot connect now
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.TooManyConnectionsError,
            OSError,  # refused, reset, broken pipe (ConnectionError is an OSError)
            TimeoutError,
        ),
    ):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        message = str(exc)
        if (
            "connection is closed" in message
            or "pool is closing" in message
            or "pool is closed" in message
        ):
            return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # the connection's protocol state broke when the server went away mid-operation; such a
        # connection is discarded (ResilientPostgresEngine._run_in_pool, the pool's reset)
        return True
    context = exc.__cause__ or exc.__context__
    return _depth < 5 and context is not None and is_database_unavailable(context, _depth + 1)


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return (
        exc
        if isinstance(exc, DatabaseUnavailable)
        else DatabaseUnavailable(f"{type(exc).__name__}: {exc}")
    )


async def _give_back(transaction: PostgresTransaction) -> None:
    try:
        if transaction.engine.pool:
            await transaction.engine.pool.release(transaction.connection)
        else:
            await transaction.connection.close()
    # best effort on a path that is already failing: a broken connection is terminated by the
    # pool's reset either way, and the caller raises the error that brought it here
    except Exception:  # noqa: BLE001, S110
        pass


class ResilientPostgresTransaction(PostgresTransaction):
    """Piccolo's transaction, except that losing the database is a :class:`DatabaseUnavailable`
    (the service answers 503 with Retry-After), and that a failed begin, rollback or commit still
    returns the connection to the pool and leaves the task's transaction context: piccolo's own
    skips both, after which the pool shrinks and every later query of that task (a background
    loop's, say) would run on the dead connection."""

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        try:
            self.connection = await self.get_connection()
        except Exception as exc:
            if is_database_unavailable(exc):
                raise _unavailable(exc) from exc
            raise
        try:
            self.transaction = self.connection.transaction()
            await self.begin()
        except Exception as exc:
            await _give_back(self)
            if is_database_unavailable(exc):
                raise _unavailable(exc) from exc
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self._parent:
            return exception is None
        failure: BaseException | None = None
        try:
            if exception is not None:
                if not self._rolled_back:
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
        except Exception as exc:  # noqa: BLE001 - raised below, once the connection is given back
            failure = exc
        finally:
            await _give_back(self)
            self.engine.current_transaction.reset(self.context)
        if failure is not None:
            # a failed commit's outcome is unknown here: the caller answers 503, never success
            if is_database_unavailable(failure):
                raise _unavailable(failure) from failure
            raise failure
        if (
            exception is not None
            and not isinstance(exception, DatabaseUnavailable)
            and is_database_unavailable(exception)
        ):
            raise _unavailable(exception) from exception
        return exception is None


class ResilientPostgresEngine(PostgresEngine):
    """PostgreSQL through piccolo, with "the database is away" as one typed error."""

    async def _run_in_pool(self, query: str, args: Any = None) -> Any:
        if not self.pool:
            raise ValueError("A pool isn't currently running.")
        async with self.pool.acquire() as connection:
            try:
                return await connection.fetch(query, *(args or []))
            except Exception as exc:
                if is_database_unavailable(exc):
                    connection.terminate()  # never hand out a connection in an unknown state again
                raise

    async def run_querystring(self, querystring: Any, in_pool: bool = True) -> Any:
        try:
            return await super().run_querystring(querystring, in_pool)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise _unavailable(exc) from exc
            raise

    async def run_ddl(self, ddl: str, in_pool: bool = True) -> Any:
        try:
            return await super().run_ddl(ddl, in_pool)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise _unavailable(exc) from exc
            raise

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return ResilientPostgresTransaction(engine=self, allow_nested=allow_nested)


#: what SQLite writes beside the database; it creates them with the database file's own mode
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parent owner-only (0700), whatever the umask; a
    directory that already exists is left as it is (it may be shared, as /tmp is)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(new, 0o700)


def make_private_sqlite_file(path: Path) -> None:
    """The database holds personal data and token digests: create it 0600 before SQLite does (its
    -wal, -shm and -journal files then get 0600 too), and take group and other access away from a
    database and companions an older version left readable."""
    if str(path) in ("", ":memory:") or str(path).startswith("file:"):
        return
    make_private_dirs(path.parent)
    try:
        os.close(
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        )  # an empty file is an empty database
    except FileExistsError:
        pass
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except (FileNotFoundError, PermissionError):  # no such file, or not ours to change
            continue


#: ``?pool_mode=`` of a PostgreSQL URL: ``session`` (PostgreSQL itself, or PgBouncer in session
#: pooling) or ``transaction`` (PgBouncer in transaction pooling)
POOL_MODES = ("session", "transaction")


class TransactionPooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection for PgBouncer's transaction pooling, where consecutive transactions of
    one client connection may run on different server connections.

    - No named prepared statements: the engine sets ``statement_cache_size=0``, so asyncpg parses
      each statement as the unnamed statement, in the same protocol exchange that runs it (Parse
      and Describe end with Flush, not Sync: PgBouncer keeps the server until the Sync after
      Execute).  A named statement would be prepared on one server and looked for on another
      ("prepared statement does not exist"); PgBouncer 1.18 cannot track them.
    - No reset query when the pool takes a connection back: asyncpg's (``RESET ALL``,
      ``pg_advisory_unlock_all()``, ``CLOSE ALL``, ``UNLISTEN *``) would run on whatever server
      PgBouncer picks, undoing nothing of ours and costing a round trip each time.  The service
      keeps no session state: its advisory locks are transaction-level
      (``pg_advisory_xact_lock``), its settings ``SET LOCAL``, and it neither LISTENs nor holds
      cursors or temporary tables across transactions (``docs/operations.md``, "PgBouncer").
    """

    def get_reset_query(self) -> str:
        return ""


def pool_mode(database_url: str) -> str:
    """The ``pool_mode`` a PostgreSQL URL asks for (``session`` when it names none); any other
    query parameter is refused rather than silently ignored."""
    query = parse_qs(urlparse(database_url).query, keep_blank_values=True)
    unknown = sorted(set(query) - {"pool_mode"})
    if unknown:
        raise ValueError(
            f"unsupported database URL parameter(s) {', '.join(unknown)}; "
            f"only pool_mode={'|'.join(POOL_MODES)}"
        )
    mode = query.get("pool_mode", ["session"])
    if len(mode) != 1 or mode[0] not in POOL_MODES:
        raise ValueError(f"pool_mode must be one of {', '.join(POOL_MODES)}")
    return mode[0]


def postgres_config(database_url: str) -> dict[str, Any]:
    """asyncpg's connection arguments for ``database_url`` (piccolo passes them to
    ``asyncpg.connect`` and ``asyncpg.create_pool``)."""
    parsed = urlparse(database_url)
    config: dict[str, Any] = {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password or "") or None,
        "database": parsed.path.lstrip("/") or "postgres",
    }
    if pool_mode(database_url) == "transaction":
        config["statement_cache_size"] = 0
        config["connection_class"] = TransactionPooledConnection
    return config


def make_engine(database_url: str) -> Engine[Any]:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
        make_private_dirs(path.parent)
        return SharedConnectionSQLiteEngine(path=str(path), timeout=30, check_same_thread=False)
    return ResilientPostgresEngine(config=postgres_config(database_url))


def bind_engine(engine: Engine[Any]) -> None:
    """Point every table (and piccolo's migration bookkeeping) at ``engine``."""
    os.environ["PICCOLO_CONF"] = PICCOLO_CONF
    conf: Any = importlib.import_module(PICCOLO_CONF)
    conf.DB = engine
    tables: list[type[Table]] = [*all_tables(), Migration]
    for table in tables:
        table._meta.db = engine


async def prepare_sqlite(engine: Engine[Any]) -> None:
    """WAL lets readers run beside the writer; the busy timeout queues writers instead
    of failing."""
    if isinstance(engine, SQLiteEngine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")


async def migrate(engine: Engine[Any]) -> None:
    """Apply every pending migration of every app, in order."""
    bind_engine(engine)
    await prepare_sqlite(engine)
    for config in app_configs():
        result = await run_forwards(app_name=config.app_name)
        if not result.success:
            raise MigrationFailed(f"{config.app_name}: {result.message}")


#: how long closing the PostgreSQL pool waits for connections still in use before it terminates
#: them (a task cancelled in the middle of a transaction must not hold shutdown for ever)
POOL_CLOSE_SECONDS = 10.0


async def close_engine(engine: Engine[Any]) -> None:
    if isinstance(engine, SharedConnectionSQLiteEngine):
        await engine.close()
    elif isinstance(engine, PostgresEngine) and engine.pool:
        pool, engine.pool = engine.pool, None
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
        except TimeoutError:
            logging.getLogger(__name__).warning(
                "db.pool_close_timeout",
                extra={"seconds": POOL_CLOSE_SECONDS},
            )
            pool.terminate()


def as_date(value: object) -> dt.date:
    """A DATE column as a date: piccolo gives dates, a raw query on SQLite ISO text."""
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique/primary-key conflict on SQLite or PostgreSQL."""
    import sqlite3

    try:
        from asyncpg.exceptions import UniqueViolationError
    except ImportError:  # pragma: no cover - asyncpg ships with piccolo[postgres]
        UniqueViolationError = ()
    if isinstance(exc, UniqueViolationError):
        return True
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc).upper()


async def ping(engine: Engine[Any]) -> None:
    try:
        await engine.run_ddl("SELECT 1")
    except Exception as exc:  # every driver has its own error types
        raise DatabaseUnavailable(str(exc)) from exc
