"""Appending, permissions, receipts, sealing and proofs of the consent log (SQLite file)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine

from ledger import (
    Event,
    InvalidEntry,
    Ledger,
    NotFound,
    NotYetSealed,
    WriterRejected,
    sign_batch,
    verify_block,
    verify_receipt,
)
from ledger.records import ZERO_HASH, decode_leaf
from ledger.tables import LedgerAnchor, LedgerEntry
from ledger.verify import (
    check_receipt,
    verify_consistency_proof,
    verify_history,
    verify_inclusion_proof,
)
from tests.ledger.helpers import WRITER_ID, batch_of, body, grant_commitment


async def test_append_returns_at_once_a_signed_receipt_per_entry(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    receipts = await ledger.append(batch_of(writer_key, body(), body(Event.REQUESTED)))
    assert [r.seq for r in receipts] == [0, 1]
    for receipt in receipts:
        verify_receipt(receipt, ledger.public_key)
        assert receipt.log_key_id == ledger.key_id
    assert (await ledger.append(batch_of(writer_key, body())))[0].seq == 2


async def test_a_receipt_from_another_key_or_for_another_entry_is_refused(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    import msgspec

    from ledger import InvalidProof

    receipt = (await ledger.append(batch_of(writer_key, body())))[0]
    with pytest.raises(InvalidProof) as error:
        verify_receipt(receipt, Ed25519PrivateKey.generate().public_key())
    assert error.value.code == "receipt.wrong_log"
    with pytest.raises(InvalidProof) as error:
        verify_receipt(msgspec.structs.replace(receipt, entry_hash=bytes(32)), ledger.public_key)
    assert error.value.code == "receipt.bad_signature"


async def test_unknown_withdrawn_and_forged_writers_are_refused(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(WriterRejected) as error:
        await ledger.append(batch_of(stranger, body(), writer_id="stranger"))
    assert error.value.code == "writer.unknown"
    with pytest.raises(WriterRejected) as error:
        await ledger.append(batch_of(stranger, body()))  # claims to be the registered writer
    assert error.value.code == "writer.bad_signature"
    await ledger.withdraw_writer(WRITER_ID)
    with pytest.raises(WriterRejected) as error:
        await ledger.append(batch_of(writer_key, body()))
    assert error.value.code == "writer.withdrawn"
    assert [w.status for w in await ledger.writers()] == ["withdrawn"]
    assert await LedgerEntry.count() == 0


async def test_writer_registration_is_idempotent_but_ids_are_not_reused(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    again = await ledger.register_writer(WRITER_ID, writer_key.public_key())
    assert again.status == "active"
    with pytest.raises(WriterRejected) as error:
        await ledger.register_writer(WRITER_ID, Ed25519PrivateKey.generate().public_key())
    assert error.value.code == "writer.exists"
    with pytest.raises(WriterRejected) as error:
        await ledger.withdraw_writer("nobody")
    assert error.value.code == "writer.unknown"
    with pytest.raises(InvalidEntry) as error:
        await ledger.register_writer("bad id with spaces", writer_key.public_key())
    assert error.value.code == "entry.bad_writer_id"


async def test_malformed_bodies_are_refused_before_anything_is_written(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    from ledger import EntryBody

    with pytest.raises(InvalidEntry) as error:
        sign_batch(WRITER_ID, [EntryBody(Event.GRANTED, 1, "rp", b"short")], writer_key)
    assert error.value.code == "entry.bad_commitment"
    with pytest.raises(InvalidEntry) as error:
        sign_batch(WRITER_ID, [], writer_key)
    assert error.value.code == "entry.bad_batch_size"
    with pytest.raises(InvalidEntry) as error:
        sign_batch(WRITER_ID, [EntryBody(Event.GRANTED, -1, "rp", bytes(32))], writer_key)
    assert error.value.code == "entry.bad_time"


async def test_append_joins_the_callers_transaction_and_rolls_back_with_it(
    engine: Engine, ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with engine.transaction():
            await ledger.append(batch_of(writer_key, body()))
            raise Boom
    assert await LedgerEntry.count() == 0
    async with engine.transaction():
        receipts = await ledger.append(batch_of(writer_key, body()))
    assert receipts[0].seq == 0  # no gap left by the rolled-back append
    assert await LedgerEntry.count() == 1


async def test_sealing_makes_signed_chained_blocks_and_queues_one_anchor_each(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    assert await ledger.seal() is None
    await ledger.append(batch_of(writer_key, *(body() for _ in range(5))))
    first = await ledger.seal()
    assert first is not None and (first.number, first.tree_size, first.prev_hash) == (
        0,
        5,
        ZERO_HASH,
    )
    assert await ledger.seal() is None
    await ledger.append(batch_of(writer_key, body()))
    await ledger.append(batch_of(writer_key, body()))
    second = await ledger.seal()
    assert second is not None and (second.number, second.tree_size) == (1, 7)
    assert second.prev_hash == first.block_hash
    for block in (first, second):
        verify_block(block, ledger.public_key)
    jobs = await LedgerAnchor.select(LedgerAnchor.block_number, LedgerAnchor.status)
    assert jobs == [
        {"block_number": 0, "status": "pending"},
        {"block_number": 1, "status": "pending"},
    ]


async def test_a_receipt_becomes_an_inclusion_proof_after_the_seal(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    receipts = await ledger.append(batch_of(writer_key, body(), body(), body()))
    assert (await check_receipt(ledger, receipts[1])).status == "pending"
    with pytest.raises(NotYetSealed):
        await ledger.inclusion_proof(1)
    await ledger.seal()
    checked = await check_receipt(ledger, receipts[1])
    assert checked.status == "sealed" and checked.proof is not None
    verify_inclusion_proof(checked.proof, ledger.public_key)
    with pytest.raises(NotFound):
        await ledger.inclusion_proof(99)
    with pytest.raises(NotFound):
        await ledger.inclusion_proof(-1)


async def test_consistency_between_any_two_blocks(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    blocks = []
    for size in (1, 3, 4, 9):
        await ledger.append(batch_of(writer_key, *(body() for _ in range(size))))
        blocks.append(await ledger.seal())
    for i, first in enumerate(blocks):
        for second in blocks[i:]:
            proof = await ledger.consistency_proof(first.tree_size, second.tree_size)
            verify_consistency_proof(proof, first, second, ledger.public_key)
    with pytest.raises(NotFound):
        await ledger.consistency_proof(1, 2)  # no block was sealed at size 2


async def test_history_proves_a_grant_was_live_at_an_access_and_not_after_revocation(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    grant = grant_commitment()
    other = grant_commitment("grant-2")
    await ledger.append(
        batch_of(
            writer_key,
            body(Event.REQUESTED, grant),
            body(Event.GRANTED, grant),
            body(commitment=other),
        )
    )
    first_access = (await ledger.append(batch_of(writer_key, body(Event.ACCESSED, grant))))[0]
    await ledger.append(batch_of(writer_key, body(Event.REVOKED, grant)))
    late_access = (await ledger.append(batch_of(writer_key, body(Event.ACCESSED, grant))))[0]
    await ledger.seal()

    standing = verify_history(
        await ledger.history_proof(first_access.seq),
        ledger.public_key,
        {WRITER_ID: writer_key.public_key()},
    )
    assert (standing.live, standing.granted_seq, standing.last_event) == (True, 1, Event.ACCESSED)
    standing = verify_history(await ledger.history_proof(late_access.seq), ledger.public_key)
    assert standing.live is False

    everything = await ledger.history(grant)
    assert [p.entry.body.event for p in everything.entries] == [
        Event.REQUESTED,
        Event.GRANTED,
        Event.ACCESSED,
        Event.REVOKED,
        Event.ACCESSED,
    ]
    assert [p.entry.prev_seq for p in everything.entries] == [None, 0, 1, 3, 4]
    assert decode_leaf(await ledger.entry_leaf(2)).body.commitment == other


async def test_a_history_with_an_entry_left_out_is_refused(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    import msgspec

    from ledger import InvalidProof

    grant = grant_commitment()
    await ledger.append(
        batch_of(
            writer_key,
            body(Event.GRANTED, grant),
            body(Event.REVOKED, grant),
            body(Event.ACCESSED, grant),
        )
    )
    await ledger.seal()
    history = await ledger.history_proof(2)
    without_revocation = msgspec.structs.replace(
        history, entries=(history.entries[0], history.entries[2])
    )
    with pytest.raises(InvalidProof) as error:
        verify_history(without_revocation, ledger.public_key)
    assert error.value.code == "history.broken_link"


async def test_a_restarted_ledger_continues_the_same_tree(
    engine: Engine, ledger: Ledger, log_key: Ed25519PrivateKey, writer_key: Ed25519PrivateKey
) -> None:
    await ledger.append(batch_of(writer_key, body(), body(), body()))
    first = await ledger.seal()
    restarted = Ledger(engine, log_key)
    await restarted.append(batch_of(writer_key, body()))
    second = await restarted.seal()
    assert second is not None and second.prev_hash == first.block_hash
    proof = await restarted.consistency_proof(first.tree_size)
    verify_consistency_proof(proof, first, second, restarted.public_key)
    verify_inclusion_proof(await restarted.inclusion_proof(1), restarted.public_key)


async def test_a_batch_of_wrong_shapes_is_refused_with_a_code(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    import msgspec

    good = batch_of(writer_key, body())
    with pytest.raises(WriterRejected) as error:
        await ledger.append(msgspec.structs.replace(good, signature="not bytes"))
    assert error.value.code == "writer.bad_signature"
    with pytest.raises(InvalidEntry) as error:
        await ledger.append(msgspec.structs.replace(good, bodies=("not a body",)))
    assert error.value.code == "entry.malformed"
    decoded = msgspec.json.decode(
        msgspec.json.encode(good), type=type(good)
    )  # as an HTTP API would
    assert (await ledger.append(decoded))[0].seq == 0
