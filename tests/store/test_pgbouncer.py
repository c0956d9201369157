"""The service works through PgBouncer in transaction pooling (Debian's 1.18, which cannot carry a
prepared statement from one transaction to the next): ``?pool_mode=transaction`` turns asyncpg's
named statements and its reset query off, migrations and partition maintenance run through it, and
nothing in the code relies on session state.  PgBouncer: ``scripts/start_pgbouncer.sh``."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from ecard.store import db
from ecard.store.partitions import Policy, maintain, retention_policy
from tests.helpers import admin_sql, database_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def empty_database(postgres_server_url: str, pgbouncer_server_url: str) -> Iterator[str]:
    """A new, empty database reached through PgBouncer: its pool starts with no server
    connection, so which server a client gets next is known."""
    name = f"ecard_t_{uuid.uuid4().hex[:12]}"
    admin_sql(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield database_url(pgbouncer_server_url, name)
    admin_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def without_pool_mode(url: str) -> str:
    return url.split("?", 1)[0]


async def statement_then_another_transaction(config: dict[str, object]) -> list[int]:
    """The classic failure: client A runs a statement (asyncpg prepares it on server 1), client
    B's transaction then holds server 1, and A runs the same statement again, on server 2."""
    first = await asyncpg.connect(**config)
    second = await asyncpg.connect(**config)
    try:
        answers = [await first.fetchval("SELECT $1::int + 1", 1)]
        async with second.transaction():
            await second.fetchval("SELECT 1")  # holds the one server connection there was
            answers.append(await first.fetchval("SELECT $1::int + 1", 2))
        return answers
    finally:
        await first.close()
        await second.close()


async def test_without_the_pool_mode_a_named_statement_is_lost_between_servers(
    empty_database: str,
) -> None:
    """The control: asyncpg's defaults through PgBouncer meet "prepared statement does not exist"
    (so the test below would see it too, were it still there)."""
    config = db.postgres_config(without_pool_mode(empty_database))
    with pytest.raises(asyncpg.InvalidSQLStatementNameError, match="does not exist"):
        await statement_then_another_transaction(config)


async def test_with_transaction_pooling_statements_never_outlive_their_exchange(
    empty_database: str,
) -> None:
    assert await statement_then_another_transaction(db.postgres_config(empty_database)) == [2, 3]


async def test_concurrent_transactions_through_pgbouncer_do_not_see_each_others_statements(
    empty_database: str,
) -> None:
    """Forty tasks on a pool of ten, each in transactions and out of them, with statements of their
    own and shared ones: every one gets its own answers."""
    engine = db.make_engine(empty_database)
    await engine.start_connection_pool(min_size=2, max_size=10)
    try:
        await engine.run_ddl("CREATE TABLE t (id int PRIMARY KEY, owner int NOT NULL)")

        async def worker(n: int) -> list[int]:
            seen = []
            for round_ in range(5):
                async with engine.transaction() as transaction:
                    connection = transaction.connection
                    await connection.execute(
                        "INSERT INTO t (id, owner) VALUES ($1, $2)", n * 100 + round_, n
                    )
                    # a text of its own: a statement no other task ever prepares
                    seen.append(
                        await connection.fetchval(
                            f"SELECT count(*) FROM t WHERE owner = $1 AND {n} = {n}",  # noqa: S608
                            n,
                        )
                    )
                seen.append(
                    (
                        await engine._run_in_pool(
                            "SELECT count(*) AS c FROM t WHERE owner = $1", [n]
                        )
                    )[0]["c"]
                )
            return seen

        results = await asyncio.gather(*(worker(n) for n in range(40)))
        assert all(seen == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5] for seen in results)
    finally:
        await db.close_engine(engine)


async def test_a_pooled_connection_sends_no_reset_query(empty_database: str) -> None:
    engine = db.make_engine(empty_database)
    await engine.start_connection_pool(min_size=1, max_size=1)
    try:
        assert engine.pool is not None
        async with engine.pool.acquire() as connection:
            assert isinstance(connection, db.TransactionPooledConnection)
            assert connection.get_reset_query() == ""
    finally:
        await db.close_engine(engine)


async def test_migrations_and_partition_maintenance_run_through_pgbouncer(
    empty_database: str,
) -> None:
    """No separate migration URL is needed: piccolo runs each migration in one transaction, and
    maintenance takes a transaction-level advisory lock; two runs at once both succeed."""
    engine = db.make_engine(empty_database)
    try:
        await db.migrate(engine)
    finally:
        await db.close_engine(engine)
    engines = [db.make_engine(empty_database) for _ in range(2)]
    policy = Policy(retention=retention_policy())
    later = dt.datetime(2029, 1, 15, tzinfo=dt.UTC)
    try:
        results = await asyncio.gather(*(maintain(e, policy, now=later) for e in engines))
    finally:
        for e in engines:
            await db.close_engine(e)
    created = [s.partition for steps in results for s in steps if s.action == "create"]
    assert "audit_event_p202901" in created and len(created) == len(set(created))


def test_the_pool_mode_is_read_from_the_url_and_nothing_else_is_ignored() -> None:
    pooled = db.postgres_config("postgresql://u:p%40ss@db.example:6432/ecard?pool_mode=transaction")
    assert pooled["statement_cache_size"] == 0
    assert pooled["connection_class"] is db.TransactionPooledConnection
    assert pooled["password"] == "p@ss" and pooled["port"] == 6432
    direct = db.postgres_config("postgresql://u@db.example/ecard")
    assert "statement_cache_size" not in direct and "connection_class" not in direct
    assert db.pool_mode("postgresql://u@h/e?pool_mode=session") == "session"
    for bad in ("?pool_mode=statement", "?sslmode=require", "?pool_mode=transaction&x=1"):
        with pytest.raises(ValueError):
            db.pool_mode(f"postgresql://u@h/e{bad}")


#: what would break under transaction pooling: state kept by a server session between transactions
SESSION_STATE = re.compile(
    r"pg_(try_)?advisory_lock(_shared)?\s*\("  # session-level advisory locks (xact ones are fine)
    r"|(?-i:[\"']\s*(UN)?LISTEN\b)|\.add_listener\("  # notifications
    r"|(?-i:[\"']\s*SET\s+(?!LOCAL\b)(SESSION\s+)?\w+\s*(=|TO\b))"  # SET without LOCAL
    r"|set_config\([^)]*,\s*false\s*\)"  # set_config(..., is_local => false)
    # a temporary table outliving its transaction, server-side cursors
    r"|\bCREATE\s+TEMP(ORARY)?\s+TABLE\b(?!.*\bON\s+COMMIT\s+DROP\b)"
    r"|\bDECLARE\s+\w+\s+CURSOR\b|WITH\s+HOLD|\.cursor\("
    r"|\.prepare\(",  # named prepared statements
    re.IGNORECASE,
)


def test_no_code_keeps_session_state_that_transaction_pooling_would_lose() -> None:
    offenders = []
    for path in [*(ROOT / "ecard").rglob("*.py"), *(ROOT / "ledger").rglob("*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SESSION_STATE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(
    "line",
    [
        'await conn.execute("SELECT pg_advisory_lock(1)")',
        'await conn.execute("SET statement_timeout = 5")',
        'await conn.execute("LISTEN events")',
        'await conn.execute("CREATE TEMP TABLE x (a int)")',
        "stmt = await conn.prepare(query)",
    ],
)
def test_the_session_state_check_catches_what_it_is_for(line: str) -> None:
    assert SESSION_STATE.search(line)
    assert not SESSION_STATE.search("await c.execute(\"SET LOCAL lock_timeout = '10s'\")")
    assert not SESSION_STATE.search('await c.execute("SELECT pg_advisory_xact_lock($1)", 1)')
    assert not SESSION_STATE.search('"CREATE TEMPORARY TABLE s (a int) ON COMMIT DROP"')
    assert not SESSION_STATE.search('raise Error("set ECARD_X to a URL")')


def test_the_start_script_is_idempotent_and_prints_the_url(pgbouncer_server_url: str) -> None:
    """With ours already running (the fixture found it), the script starts nothing and prints the
    URL the tests use."""
    import os
    import subprocess

    if os.environ.get("ECARD_TEST_PGBOUNCER_URL"):
        pytest.skip("a PgBouncer other than the script's default is under test")
    done = subprocess.run(
        [str(ROOT / "scripts/start_pgbouncer.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pgbouncer_server_url
