"""The audit finds every kind of tampering done directly in the database, with its position."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Event, Ledger
from ledger.tables import LedgerAnchor, LedgerBlock, LedgerEntry
from ledger.verify import audit
from tests.ledger.helpers import batch_of, body, grant_commitment


async def sealed_log(ledger: Ledger, writer_key: Ed25519PrivateKey) -> None:
    """Three blocks: 4 + 3 + 3 entries, one commitment with a grant, an access and a revocation."""
    grant = grant_commitment()
    await ledger.append(batch_of(writer_key, body(Event.GRANTED, grant), body(), body(), body()))
    await ledger.seal()
    await ledger.append(batch_of(writer_key, body(Event.ACCESSED, grant), body(), body()))
    await ledger.seal()
    await ledger.append(batch_of(writer_key, body(Event.REVOKED, grant)))
    await ledger.append(batch_of(writer_key, body(), body()))
    await ledger.seal()


def positions(report) -> set[tuple[str, int | None, int | None]]:
    return {(p.code, p.seq, p.block) for p in report.problems}


async def test_an_untouched_log_passes(ledger: Ledger, writer_key: Ed25519PrivateKey) -> None:
    await sealed_log(ledger, writer_key)
    report = await audit(ledger)
    assert report.ok, report.problems
    assert (report.entries, report.blocks, report.anchors_pending) == (10, 3, 3)


async def test_an_edited_entry_column_is_found_at_its_seq(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await sealed_log(ledger, writer_key)
    await LedgerEntry.update({LedgerEntry.relying_party: "rp-someone-else"}).where(
        LedgerEntry.seq == 5
    )
    assert positions(await audit(ledger)) == {("entry.columns_mismatch", 5, None)}


async def test_a_rewritten_leaf_is_found_at_its_seq_and_in_its_block(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await sealed_log(ledger, writer_key)
    leaf = (await LedgerEntry.select(LedgerEntry.leaf).where(LedgerEntry.seq == 2).first())["leaf"]
    forged = bytes(leaf).replace(b"rp-hospital-1", b"rp-hospital-2")
    from ledger.merkle import leaf_hash

    await LedgerEntry.update(
        {
            LedgerEntry.leaf: forged,
            LedgerEntry.entry_hash: leaf_hash(forged),
            LedgerEntry.relying_party: "rp-hospital-2",
        }
    ).where(LedgerEntry.seq == 2)
    found = positions(await audit(ledger))
    assert ("entry.bad_signature", 2, None) in found
    assert {("block.root_mismatch", None, n) for n in (0, 1, 2)} <= found


async def test_a_deleted_revocation_is_found(ledger: Ledger, writer_key: Ed25519PrivateKey) -> None:
    await sealed_log(ledger, writer_key)
    await LedgerEntry.delete().where(LedgerEntry.seq == 7)
    found = {(code, seq) for code, seq, _ in positions(await audit(ledger))}
    assert ("entry.gap", 8) in found


async def test_a_tampered_block_is_found_at_its_number(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await sealed_log(ledger, writer_key)
    await LedgerBlock.update({LedgerBlock.root: bytes(32)}).where(LedgerBlock.number == 1)
    found = positions(await audit(ledger))
    assert {
        ("block.bad_signature", None, 1),
        ("block.root_mismatch", None, 1),
        ("block.broken_chain", None, 2),
        ("anchor.job_mismatch", None, 1),
    } <= found
    assert all(block == 1 or code == "block.broken_chain" for code, _, block in found)


async def test_a_tampered_anchor_job_is_found_at_its_block(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await sealed_log(ledger, writer_key)
    await LedgerAnchor.update({LedgerAnchor.tree_size: 99}).where(LedgerAnchor.block_number == 2)
    await LedgerAnchor.delete().where(LedgerAnchor.block_number == 0)
    assert positions(await audit(ledger)) == {
        ("anchor.job_mismatch", None, 2),
        ("anchor.job_missing", None, 0),
    }


async def test_an_entry_by_an_unregistered_writer_is_found(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await sealed_log(ledger, writer_key)
    await LedgerEntry.update({LedgerEntry.writer_id: "ghost"}).where(LedgerEntry.seq == 0)
    from ledger.tables import LedgerWriter

    await LedgerWriter.delete().where(LedgerWriter.id == "consent-service")
    found = positions(await audit(ledger))
    assert ("entry.columns_mismatch", 0, None) in found
    assert ("entry.unknown_writer", 3, None) in found


async def test_a_tampered_commitment_head_is_found_before_it_breaks_a_link(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    from ledger.tables import LedgerCommitment

    await sealed_log(ledger, writer_key)
    await LedgerCommitment.update({LedgerCommitment.last_seq: 1}).where(
        LedgerCommitment.last_seq == 7
    )
    assert positions(await audit(ledger)) == {("commitment.heads_mismatch", None, None)}
