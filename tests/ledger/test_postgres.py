"""The same log on PostgreSQL: migrations, appends inside the caller's transaction (outbox), and
concurrent appenders that still get gapless sequence numbers."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine

from ledger import Event, Ledger
from ledger.tables import LedgerEntry, LedgerTile
from ledger.verify import audit, check_receipt
from tests.ledger.helpers import WRITER_ID, batch_of, body, check_proofs, grant_commitment, grow

pytestmark = pytest.mark.postgres


@pytest.fixture()
async def pg_ledger(
    pg_engine: Engine, log_key: Ed25519PrivateKey, writer_key: Ed25519PrivateKey
) -> Ledger:
    ledger = Ledger(pg_engine, log_key)
    await ledger.register_writer(WRITER_ID, writer_key.public_key())
    return ledger


async def test_outbox_append_commits_or_rolls_back_with_the_callers_write(
    pg_engine: Engine, pg_ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await pg_engine.run_ddl("CREATE TABLE grant_row (id TEXT PRIMARY KEY)")
    try:
        async with pg_engine.transaction():
            await pg_engine.run_ddl("INSERT INTO grant_row VALUES ('g-rolled-back')")
            await pg_ledger.append(batch_of(writer_key, body()))
            raise RuntimeError("the consent service failed after writing")
    except RuntimeError:
        pass
    async with pg_engine.transaction():
        await pg_engine.run_ddl("INSERT INTO grant_row VALUES ('g1')")
        receipts = await pg_ledger.append(
            batch_of(writer_key, body(Event.GRANTED, grant_commitment()))
        )
    assert receipts[0].seq == 0
    assert [r["id"] for r in await pg_engine.run_ddl("SELECT id FROM grant_row")] == ["g1"]
    await pg_ledger.seal()
    assert (await check_receipt(pg_ledger, receipts[0])).status == "sealed"


async def test_concurrent_transactions_get_gapless_sequence_numbers(
    pg_ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    async def one_grant(fail: bool) -> None:
        try:
            async with pg_ledger.engine.transaction():
                await pg_ledger.append(batch_of(writer_key, body()))
                if fail:
                    raise RuntimeError
        except RuntimeError:
            pass

    await asyncio.gather(*(one_grant(fail=i % 3 == 0) for i in range(12)))
    seqs = [
        row["seq"] for row in await LedgerEntry.select(LedgerEntry.seq).order_by(LedgerEntry.seq)
    ]
    assert seqs == list(range(8))
    await pg_ledger.seal()
    report = await audit(pg_ledger)
    assert report.ok, report.problems


async def test_workers_starting_together_register_the_same_writer_once(
    pg_engine: Engine, log_key: Ed25519PrivateKey, writer_key: Ed25519PrivateKey
) -> None:
    """Each worker of a new deployment registers the writer at start-up, at the same moment."""
    workers = [Ledger(pg_engine, log_key) for _ in range(8)]
    registered = await asyncio.gather(
        *(w.register_writer(WRITER_ID, writer_key.public_key()) for w in workers)
    )
    assert len({(w.id, w.public_key, w.status) for w in registered}) == 1
    assert [w.id for w in await workers[0].writers()] == [WRITER_ID]


async def test_a_restarted_log_resumes_from_stored_tiles_and_rebuilds_missing_ones(
    pg_engine: Engine, pg_ledger: Ledger, log_key: Ed25519PrivateKey, writer_key: Ed25519PrivateKey
) -> None:
    blocks = await grow(pg_ledger, writer_key)
    stored = {row["position"]: bytes(row["hashes"]) for row in await LedgerTile.select()}
    await LedgerTile.delete().where(LedgerTile.position >= 6)
    restarted = Ledger(pg_engine, log_key)
    await check_proofs(restarted, blocks, range(0, 2601, 53))
    assert {row["position"]: bytes(row["hashes"]) for row in await LedgerTile.select()} == stored
    assert (await audit(restarted)).problems == []
