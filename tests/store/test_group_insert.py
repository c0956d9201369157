"""Group commit of verification records: concurrent rows share one INSERT, yet every caller
returns only once its own row is committed, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from piccolo.engine.base import Engine
from piccolo.querystring import QueryString

from ecard.codes.tables import CodeVerification
from ecard.registry.tables import ApiClient
from ecard.store import db
from ecard.store.group_insert import GroupInsert

VERIFIER = "verifier-group-insert"

#: for what only the embedded engine does (two shared connections, one for reads)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ecard.db"
    return request.getfixturevalue("migrated_postgres_url")


@pytest.fixture()
async def engine(database_url: str) -> AsyncIterator[Engine]:
    """The service's engine on a migrated database, bound to every table, with one verifier."""
    engine = db.make_engine(database_url)
    if database_url.startswith("sqlite:///"):
        await db.migrate(engine)
    else:  # the template database is migrated already
        db.bind_engine(engine)
        await engine.start_connection_pool(min_size=1, max_size=10)
    try:
        await ApiClient.insert(ApiClient(id=VERIFIER, kind="verifier", name=VERIFIER)).run()
        yield engine
    finally:
        await db.close_engine(engine)


class InsertSpy:
    """Records the INSERT statements into code_verification that reach the engine, and can hold
    them at the database's door so that a test acts while a batch is being written."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements = 0
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        run = engine.run_querystring

        async def spied(querystring: QueryString, **kwargs: Any) -> Any:
            if querystring.template.startswith("INSERT INTO code_verification"):
                self.statements += 1
                self.writing.set()
                await self.release.wait()
            return await run(querystring, **kwargs)

        monkeypatch.setattr(engine, "run_querystring", spied)


@pytest.fixture()
def spy(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> InsertSpy:
    return InsertSpy(engine, monkeypatch)


COLUMNS = (CodeVerification.verifier, CodeVerification.code_id, CodeVerification.result)


def verification(code_id: str, verifier: str = VERIFIER) -> tuple[str, str, str]:
    return (verifier, code_id, "valid")


async def stored_codes() -> list[str]:
    return sorted(await CodeVerification.select(CodeVerification.code_id).output(as_list=True))


async def test_concurrent_rows_are_all_committed_in_fewer_statements(spy: InsertSpy) -> None:
    """The point of group commit: one statement (one commit) carries many callers' rows, and
    none of them is lost or written twice."""
    group = GroupInsert(CodeVerification, COLUMNS)
    codes = [f"c{i:03d}" for i in range(200)]

    assert await asyncio.gather(*(group.add(verification(code)) for code in codes)) == [None] * 200

    assert await stored_codes() == codes
    assert 1 <= spy.statements < len(codes)


async def test_a_failed_batch_fails_every_caller_and_later_rows_are_written(engine: Engine) -> None:
    """A caller must never answer as if its record were kept when the statement carrying it
    failed; and one bad batch must not stop the worker from recording later verifications."""
    group = GroupInsert(CodeVerification, COLUMNS)
    rows = [verification(f"ok{i}") for i in range(10)] + [
        verification("bad", verifier="no-such-client")
    ]

    results = await asyncio.gather(*(group.add(row) for row in rows), return_exceptions=True)

    assert all(isinstance(result, Exception) for result in results), results
    assert "foreign key" in str(results[0]).lower()
    assert await stored_codes() == []

    await group.add(verification("after"))
    assert await stored_codes() == ["after"]


async def test_a_row_of_the_wrong_width_is_refused_before_it_joins_a_batch(engine: Engine) -> None:
    group = GroupInsert(CodeVerification, COLUMNS)
    with pytest.raises(ValueError, match="3 values expected"):
        await group.add((VERIFIER, "short"))
    await group.add(verification("fine"))
    assert await stored_codes() == ["fine"]


async def test_a_cancelled_caller_does_not_cancel_the_write(spy: InsertSpy) -> None:
    """A client that disconnects mid-request must not take the other callers' records (nor its
    own, already being written) down with it."""
    group = GroupInsert(CodeVerification, COLUMNS)
    spy.release.clear()
    callers = [asyncio.create_task(group.add(verification(f"c{i}"))) for i in range(5)]
    await asyncio.wait_for(spy.writing.wait(), 5)

    callers[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await callers[0]
    assert not any(caller.done() for caller in callers[1:]), "the batch is still being written"
    spy.release.set()

    assert await asyncio.gather(*callers[1:]) == [None] * 4
    assert await stored_codes() == [f"c{i}" for i in range(5)]


async def write_then_read(code_id: str) -> int:
    await CodeVerification.insert(
        CodeVerification(verifier=VERIFIER, code_id=code_id, result="valid")
    ).run()
    return await CodeVerification.count().where(CodeVerification.code_id == code_id)


@SQLITE_ONLY
async def test_sqlite_reads_see_the_writes_before_them(engine: Engine) -> None:
    """Reads and writes use separate SQLite connections; a request that writes and then reads
    (or answers, after which its client reads) must still see its own write, the second time as
    well as the first (a reader left on an old snapshot would miss it)."""
    assert isinstance(engine, db.SharedConnectionSQLiteEngine)
    assert await write_then_read("first") == 1
    assert await write_then_read("second") == 1


@SQLITE_ONLY
async def test_sqlite_reads_see_the_writes_before_them_under_concurrency(engine: Engine) -> None:
    """Statements of concurrent requests interleave on both connections; each read still starts
    after its task's write committed and must see it."""
    assert isinstance(engine, db.SharedConnectionSQLiteEngine)
    codes = [f"c{i:02d}" for i in range(50)]

    assert await asyncio.gather(*(write_then_read(code) for code in codes)) == [1] * 50
    assert await stored_codes() == codes


@SQLITE_ONLY
async def test_sqlite_write_transactions_that_read_first_wait_for_other_writers(
    engine: Engine,
) -> None:
    """A transaction that reads, then writes, while single statements commit beside it: SQLite
    refuses a DEFERRED one at once ("database is locked", no busy wait); the engine's are
    IMMEDIATE."""

    async def read_then_write(i: int) -> None:
        async with engine.transaction():
            await CodeVerification.count()
            await asyncio.sleep(0.01)
            await CodeVerification.insert(
                CodeVerification(verifier=VERIFIER, code_id=f"t{i:02d}", result="valid")
            ).run()

    async def write(i: int) -> None:
        await CodeVerification.insert(
            CodeVerification(verifier=VERIFIER, code_id=f"w{i:02d}", result="valid")
        ).run()

    await asyncio.gather(*(read_then_write(i) for i in range(10)), *(write(i) for i in range(20)))
    assert len(await stored_codes()) == 30
