"""The sealed tree is stored as tiles: a process keeps only the right edge and a few recent tiles
in memory, resumes from storage in a few queries, and rebuilds tiles a log never stored."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine

from ledger import Ledger, Unavailable, merkle
from ledger.tables import LedgerAnchor, LedgerBlock, LedgerTile, tile_position
from ledger.verify import audit, verify_inclusion_proof
from tests.ledger.helpers import batch_of, body, check_proofs, grow


async def test_seals_store_every_full_tile_and_a_restarted_log_proves_from_them(
    engine: Engine,
    ledger: Ledger,
    log_key: Ed25519PrivateKey,
    writer_key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = await grow(ledger, writer_key)
    positions = [
        row["position"]
        for row in await LedgerTile.select(LedgerTile.position).order_by(LedgerTile.position)
    ]
    assert positions == list(range(2601 // 256))
    monkeypatch.setattr(merkle, "RESIDENT_TILES", 2)
    restarted = Ledger(engine, log_key)
    await check_proofs(restarted, blocks, range(0, 2601, 37))
    tree = restarted._tree
    assert tree is not None and tree.size == 2601
    assert len(tree._tiles) <= 2 + 2  # the bound, plus the tiles of the last proof


async def test_a_log_sealed_before_tiles_were_stored_gets_them_rebuilt(
    engine: Engine,
    ledger: Ledger,
    log_key: Ed25519PrivateKey,
    writer_key: Ed25519PrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocks = await grow(ledger, writer_key)
    stored = {row["position"]: bytes(row["hashes"]) for row in await LedgerTile.select()}
    await LedgerTile.delete().where(LedgerTile.position >= 4)
    with caplog.at_level(logging.WARNING, logger="ledger"):
        restarted = Ledger(engine, log_key)
        await check_proofs(restarted, blocks, range(0, 2601, 101))
    assert "rebuilding Merkle tiles for entries 1024 to 2601" in caplog.text
    assert {row["position"]: bytes(row["hashes"]) for row in await LedgerTile.select()} == stored


async def test_a_seal_that_fails_stores_nothing_and_the_next_seal_stores_its_tiles(
    ledger: Ledger, writer_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = (await grow(ledger, writer_key, (200,)))[0]
    await ledger.append(batch_of(writer_key, *(body() for _ in range(200))))

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the database went away mid-seal")

    with monkeypatch.context() as patch:
        patch.setattr(LedgerAnchor, "insert", refuse)
        with pytest.raises(ConnectionError):
            await ledger.seal()
    assert await LedgerBlock.count() == 1 and await LedgerTile.count() == 0
    second = await ledger.seal()
    assert second is not None and second.tree_size == 400
    assert await LedgerTile.count() == 1
    await check_proofs(ledger, [first, second], range(0, 400, 13))


async def test_a_missing_tile_is_an_error_with_a_code_never_a_wrong_proof(
    engine: Engine,
    ledger: Ledger,
    log_key: Ed25519PrivateKey,
    writer_key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(merkle, "RESIDENT_TILES", 0)  # every full tile is read from storage
    await grow(ledger, writer_key)
    await LedgerTile.delete().where(LedgerTile.position == tile_position(0, 3))
    verify_inclusion_proof(await ledger.inclusion_proof(5), ledger.public_key)
    with pytest.raises(Unavailable) as error:
        await ledger.inclusion_proof(3 * 256 + 5)
    assert error.value.code == "ledger.tiles_missing"
    with pytest.raises(Unavailable) as error:
        await Ledger(engine, log_key).inclusion_proof(5)  # a restart cannot resume either
    assert error.value.code == "ledger.tiles_missing"


async def test_the_audit_finds_a_missing_or_rewritten_tile(
    ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await grow(ledger, writer_key)
    assert (await audit(ledger)).ok
    await LedgerTile.delete().where(LedgerTile.position == tile_position(0, 2))
    await LedgerTile.update({LedgerTile.hashes: bytes(merkle.TILE_BYTES)}).where(
        LedgerTile.position == tile_position(0, 7)
    )
    found = {(p.code, p.seq) for p in (await audit(ledger)).problems}
    assert found == {("tile.missing", 2 * 256), ("tile.mismatch", 7 * 256)}
