"""Anchoring through the outbox, on an in-process chain (eth-tester) and on a real JSON-RPC node
(anvil): one transaction per sealed block, nothing lost or delayed while the node is down, no
second transaction on retry, and the audit checks every anchor against the chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from ledger import Ledger
from ledger.evm.anchor import ChainAnchor, anchor_pending_once, connect, run_anchor_worker
from ledger.tables import LedgerAnchor, LedgerBlock
from ledger.verify import audit
from tests.conftest import require
from tests.ledger.chain import AnvilNode, anvil_binary, deployed, free_port
from tests.ledger.helpers import batch_of, body


@pytest.fixture()
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    binary = anvil_binary()
    require(
        binary is not None, "anvil (an EVM JSON-RPC node)", "run scripts/install_chain_tools.sh"
    )
    assert binary is not None
    node = AnvilNode(binary, tmp_path / "anvil-state.json")
    node.start()
    yield node
    node.stop()


@pytest.fixture(params=["eth-tester", "anvil"])
async def chain(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChainAnchor]:
    if request.param == "eth-tester":
        w3 = AsyncWeb3(AsyncEthereumTesterProvider())
    else:
        w3 = connect(request.getfixturevalue("anvil").url)
    anchor, _ = await deployed(w3)
    yield anchor
    await anchor.close()


async def transactions_sent(chain: ChainAnchor) -> int:
    return await chain.w3.eth.get_transaction_count(chain.sender)


async def seal_blocks(ledger: Ledger, key: Ed25519PrivateKey, sizes: list[int]) -> None:
    for size in sizes:
        await ledger.append(batch_of(key, *(body() for _ in range(size))))
        await ledger.seal()


@pytest.mark.chain
async def test_one_transaction_per_block_however_many_entries(
    ledger: Ledger, writer_key: Ed25519PrivateKey, chain: ChainAnchor
) -> None:
    before = await transactions_sent(chain)
    await seal_blocks(ledger, writer_key, [1, 250, 40])
    progress = await anchor_pending_once(ledger, chain)
    assert (progress.sent, progress.confirmed, progress.error) == (3, 3, None)
    assert await transactions_sent(chain) - before == 3
    jobs = await LedgerAnchor.select().order_by(LedgerAnchor.block_number)
    assert [j["status"] for j in jobs] == ["confirmed"] * 3
    assert all(j["tx_hash"] and j["chain_block"] and j["confirmations"] >= 1 for j in jobs)
    for job in jobs:
        record = await chain.anchored(job["block_number"])
        assert (
            record is not None
            and record.root == bytes(job["root"])
            and record.tx_hash == job["tx_hash"]
        )
    assert (await anchor_pending_once(ledger, chain)).sent == 0
    report = await audit(ledger, chain=chain)
    await chain.close()
    assert report.ok and report.anchors_confirmed == 3, report.problems


@pytest.mark.chain
async def test_a_down_node_delays_nothing_and_anchors_catch_up(
    ledger: Ledger, writer_key: Ed25519PrivateKey, chain: ChainAnchor
) -> None:
    down = ChainAnchor(
        connect(f"http://127.0.0.1:{free_port()}", timeout=2), chain.contract.address, chain.sender
    )
    await seal_blocks(ledger, writer_key, [3, 2])
    assert (await anchor_pending_once(ledger, down)).error == "anchor.unreachable"
    await down.close()
    await seal_blocks(ledger, writer_key, [4])  # appends and seals go on while the node is down
    jobs = await LedgerAnchor.select().order_by(LedgerAnchor.block_number)
    assert [j["status"] for j in jobs] == ["pending"] * 3 and "reached" in jobs[0]["last_error"]
    progress = await anchor_pending_once(ledger, chain)
    assert (progress.sent, progress.confirmed) == (3, 3)
    assert (await audit(ledger, chain=chain)).ok


@pytest.mark.chain
async def test_a_retry_after_a_lost_reply_sends_no_second_transaction(
    ledger: Ledger, writer_key: Ed25519PrivateKey, chain: ChainAnchor
) -> None:
    await seal_blocks(ledger, writer_key, [2])
    await anchor_pending_once(ledger, chain)
    sent = await transactions_sent(chain)
    job = await LedgerAnchor.select().first()
    # the worker died after sending, before recording anything
    await LedgerAnchor.update({LedgerAnchor.status: "pending", LedgerAnchor.tx_hash: None}).where(
        LedgerAnchor.block_number == 0
    )
    progress = await anchor_pending_once(ledger, chain)
    assert (progress.sent, progress.confirmed) == (0, 1)
    assert await transactions_sent(chain) == sent
    assert (await LedgerAnchor.select().first())["tx_hash"] == job["tx_hash"]


@pytest.mark.chain
async def test_only_accounts_with_the_anchorer_role_can_anchor(
    ledger: Ledger, writer_key: Ed25519PrivateKey, chain: ChainAnchor
) -> None:
    accounts = list(await chain.w3.eth.accounts)
    outsider = ChainAnchor(chain.w3, chain.contract.address, accounts[2])
    await seal_blocks(ledger, writer_key, [1])
    assert (await anchor_pending_once(ledger, outsider)).error == "anchor.rejected"
    await chain.revoke_anchorer(chain.sender, accounts[0])
    assert (await anchor_pending_once(ledger, chain)).error == "anchor.rejected"
    await chain.grant_anchorer(accounts[2], accounts[0])
    assert (await anchor_pending_once(ledger, outsider)).confirmed == 1


@pytest.mark.chain
async def test_the_audit_finds_a_block_rewritten_in_the_database_against_the_chain(
    ledger: Ledger, writer_key: Ed25519PrivateKey, chain: ChainAnchor
) -> None:
    await seal_blocks(ledger, writer_key, [2, 2])
    await anchor_pending_once(ledger, chain)
    forged = bytes(range(32))
    await LedgerBlock.update({LedgerBlock.root: forged}).where(LedgerBlock.number == 1)
    await LedgerAnchor.update({LedgerAnchor.root: forged}).where(LedgerAnchor.block_number == 1)
    found = {(p.code, p.block) for p in (await audit(ledger, chain=chain)).problems}
    assert ("anchor.chain_mismatch", 1) in found
    assert all(block == 1 for _, block in found)


@pytest.mark.chain
async def test_sealer_and_worker_run_side_by_side(
    ledger: Ledger, writer_key: Ed25519PrivateKey, chain: ChainAnchor
) -> None:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(ledger.run_sealer(0.05, stop)),
        asyncio.create_task(run_anchor_worker(ledger, chain, stop, interval=0.05)),
    ]
    for _ in range(5):
        await ledger.append(batch_of(writer_key, body(), body()))
        await asyncio.sleep(0.08)
    for _ in range(100):
        jobs = await LedgerAnchor.select(LedgerAnchor.status)
        latest = await ledger.latest_block()
        if latest and latest.tree_size == 10 and all(j["status"] == "confirmed" for j in jobs):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    report = await audit(ledger, chain=chain)
    assert report.ok and report.anchors_confirmed == report.blocks >= 1, report.problems


@pytest.mark.chain
async def test_anvil_stopped_and_restarted_loses_no_anchor(
    ledger: Ledger, writer_key: Ed25519PrivateKey, anvil: AnvilNode
) -> None:
    chain, _ = await deployed(connect(anvil.url, timeout=2))
    await seal_blocks(ledger, writer_key, [2])
    await anchor_pending_once(ledger, chain)
    anvil.stop()
    await seal_blocks(ledger, writer_key, [3, 1])
    assert (await anchor_pending_once(ledger, chain)).error == "anchor.unreachable"
    anvil.start()
    assert (await anchor_pending_once(ledger, chain)).confirmed == 2
    report = await audit(ledger, chain=chain)
    await chain.close()
    assert report.ok and report.anchors_confirmed == 3, report.problems
