"""Anchoring from the platform's own account against a node that holds no keys (anvil with
``--accounts 0``, as every production Besu or GoQuorum node): transactions signed locally with the
node's chain id, the right nonce after a restart, a stuck transaction replaced, a node down and
back, and gasPrice-0 transactions on a free-gas network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger import Ledger
from ledger.evm.anchor import ChainAnchor, anchor_pending_once, connect, deploy
from ledger.evm.sender import LocalSigner
from ledger.tables import LedgerAnchor
from ledger.verify import audit
from tests.conftest import require
from tests.ledger.chain import AnvilNode, anvil_binary
from tests.ledger.helpers import batch_of, body

pytestmark = pytest.mark.chain


class Clock:
    """A monotonic clock the test moves (the signer's replacement timeout)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def start_anvil(tmp_path: Path, *flags: str) -> AnvilNode:
    binary = anvil_binary()
    require(
        binary is not None, "anvil (an EVM JSON-RPC node)", "run scripts/install_chain_tools.sh"
    )
    assert binary is not None
    node = AnvilNode(binary, tmp_path / "anvil-state.json", "--accounts", "0", *flags)
    node.start()
    return node


@pytest.fixture()
def keyless(tmp_path: Path) -> Iterator[AnvilNode]:
    """A node without keys that mines each transaction at once."""
    node = start_anvil(tmp_path)
    yield node
    node.stop()


@pytest.fixture()
def manual(tmp_path: Path) -> Iterator[AnvilNode]:
    """A node without keys that mines only when asked (``evm_mine``): transactions wait."""
    node = start_anvil(tmp_path, "--no-mining")
    yield node
    node.stop()


@pytest.fixture()
def account() -> LocalAccount:
    return Account.create()


async def rpc(node: AnvilNode, method: str, *params: Any) -> Any:
    w3 = connect(node.url)
    try:
        return (await w3.provider.make_request(method, list(params)))["result"]  # type: ignore[arg-type]
    finally:
        await w3.provider.disconnect()


async def fund(node: AnvilNode, address: str) -> None:
    await rpc(node, "anvil_setBalance", address, hex(10**21))


async def mine(node: AnvilNode) -> None:
    await rpc(node, "evm_mine")


async def deployed_by(node: AnvilNode, signer: LocalSigner) -> ChainAnchor:
    """LedgerAnchor deployed from ``signer`` (on a node that mines at once): admin and anchorer."""
    w3 = connect(node.url, timeout=3)
    deployment = await deploy(w3, signer)
    chain = ChainAnchor(w3, deployment.address, signer, from_block=deployment.block)
    await chain.grant_anchorer(signer.address, signer)
    return chain


async def seal(ledger: Ledger, key: Ed25519PrivateKey, entries: int = 3) -> None:
    await ledger.append(batch_of(key, *(body() for _ in range(entries))))
    await ledger.seal()


async def jobs() -> list[dict[str, Any]]:
    return list(await LedgerAnchor.select().order_by(LedgerAnchor.block_number))


async def transaction(chain: ChainAnchor, tx_hash: str) -> Any:
    return await chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]


@pytest.fixture()
async def chain(keyless: AnvilNode, account: LocalAccount) -> AsyncIterator[ChainAnchor]:
    await fund(keyless, account.address)
    anchor = await deployed_by(keyless, LocalSigner(account))
    yield anchor
    await anchor.close()


async def test_the_configured_account_signs_every_anchor_on_a_node_without_keys(
    chain: ChainAnchor, account: LocalAccount, ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    assert await chain.w3.eth.accounts == []  # the node could not send anything itself
    for _ in range(3):
        await seal(ledger, writer_key)
        progress = await anchor_pending_once(ledger, chain)
        assert progress.error is None and progress.sent == 1
    await anchor_pending_once(ledger, chain)
    rows = await jobs()
    assert [job["status"] for job in rows] == ["confirmed"] * 3
    chain_id = await chain.w3.eth.chain_id
    nonces = []
    for job in rows:
        tx = await transaction(chain, job["tx_hash"])
        assert tx["from"] == account.address and tx["chainId"] == chain_id  # EIP-155
        assert tx["type"] == 2  # the chain has a base fee: EIP-1559 fees from the node
        nonces.append(tx["nonce"])
    assert nonces == [2, 3, 4]  # after the deployment (0) and the role grant (1)
    report = await audit(ledger, log_public_key=ledger.public_key, chain=chain)
    assert report.ok and report.anchors_confirmed == 3, report.problems


async def test_a_restart_with_transactions_in_the_pool_keeps_the_nonces_right(
    manual: AnvilNode, account: LocalAccount, ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await fund(manual, account.address)
    w3 = connect(manual.url, timeout=3)
    signer = LocalSigner(account)
    deployment_hash = await signer.transact(
        w3, w3.eth.contract(abi=_abi(), bytecode=_bytecode()).constructor()
    )
    await mine(manual)
    address = (await w3.eth.get_transaction_receipt(deployment_hash))["contractAddress"]  # type: ignore[arg-type]
    first = ChainAnchor(w3, address, signer)
    grant = first.contract.functions.grantAnchorer(account.address)
    await signer.transact(w3, grant)
    await mine(manual)

    await seal(ledger, writer_key)
    assert (await anchor_pending_once(ledger, first)).sent == 1  # block 0: in the pool
    # the process stops; a new one (new signer, no memory) takes over while block 0 is unmined
    restarted = ChainAnchor(connect(manual.url, timeout=3), address, LocalSigner(account))
    await seal(ledger, writer_key)
    progress = await anchor_pending_once(ledger, restarted)
    assert progress.error is None and progress.sent == 1 and progress.waiting == 2
    pool = [await transaction(restarted, job["tx_hash"]) for job in await jobs()]
    assert [tx["nonce"] for tx in pool] == [2, 3]  # the node's pending count, not a memory

    await mine(manual)
    await anchor_pending_once(ledger, restarted)
    assert [job["status"] for job in await jobs()] == ["confirmed", "confirmed"]

    # a worker that sent block 2's anchor and stopped before recording it: the next one waits
    # for that transaction instead of racing it, then adopts it (one transaction per block)
    await seal(ledger, writer_key)
    block2 = (await jobs())[2]
    orphan = await first.send(
        2, bytes(block2["root"]), block2["tree_size"], bytes(block2["prev_hash"])
    )
    clock = Clock()
    careful = ChainAnchor(
        connect(manual.url, timeout=3), address, LocalSigner(account, clock=clock)
    )
    progress = await anchor_pending_once(ledger, careful)
    assert progress.sent == 0
    assert (await jobs())[2]["status"] == "pending" and "unmined" in (await jobs())[2]["last_error"]
    await mine(manual)
    await anchor_pending_once(ledger, careful)
    job = (await jobs())[2]
    assert job["status"] == "confirmed" and job["tx_hash"] == orphan
    assert await w3.eth.get_transaction_count(account.address) == 5
    report = await audit(ledger, log_public_key=ledger.public_key, chain=careful)
    assert report.ok, report.problems
    for chain in (first, restarted, careful):
        await chain.close()


async def test_a_stuck_transaction_is_replaced_with_the_same_nonce_and_higher_fees(
    manual: AnvilNode, account: LocalAccount, ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await fund(manual, account.address)
    clock = Clock()
    signer = LocalSigner(account, replace_after=60, clock=clock)
    w3 = connect(manual.url, timeout=3)
    deployment_hash = await signer.transact(
        w3, w3.eth.contract(abi=_abi(), bytecode=_bytecode()).constructor()
    )
    await mine(manual)
    address = (await w3.eth.get_transaction_receipt(deployment_hash))["contractAddress"]  # type: ignore[arg-type]
    chain = ChainAnchor(w3, address, signer)
    await signer.transact(w3, chain.contract.functions.grantAnchorer(account.address))
    await mine(manual)

    await seal(ledger, writer_key)
    await anchor_pending_once(ledger, chain)
    stuck = (await jobs())[0]["tx_hash"]
    before = await transaction(chain, stuck)
    clock.now += 30  # not yet
    await anchor_pending_once(ledger, chain)
    assert (await jobs())[0]["tx_hash"] == stuck
    clock.now += 31
    await anchor_pending_once(ledger, chain)
    job = (await jobs())[0]
    replacement = job["tx_hash"]
    assert replacement != stuck and "replaced" in job["last_error"]
    after = await transaction(chain, replacement)
    assert after["nonce"] == before["nonce"] == 2 and after["from"] == account.address
    assert after["maxFeePerGas"] >= before["maxFeePerGas"] * 1.25
    assert after["input"] == before["input"]  # the same anchor call
    await mine(manual)
    await anchor_pending_once(ledger, chain)
    job = (await jobs())[0]
    assert job["status"] == "confirmed" and job["tx_hash"] == replacement
    receipt = await w3.eth.get_transaction_receipt(replacement)  # type: ignore[arg-type]
    assert receipt["status"] == 1
    with pytest.raises(Exception, match="not found"):
        await w3.eth.get_transaction(stuck)  # type: ignore[arg-type]
    report = await audit(ledger, log_public_key=ledger.public_key, chain=chain)
    assert report.ok and report.anchors_confirmed == 1, report.problems
    await chain.close()


async def test_replacement_raises_the_fees_and_respects_the_cap(
    manual: AnvilNode, account: LocalAccount
) -> None:
    await fund(manual, account.address)
    w3 = connect(manual.url, timeout=3)
    clock = Clock()
    signer = LocalSigner(account, replace_after=1, clock=clock)
    factory = w3.eth.contract(abi=_abi(), bytecode=_bytecode())
    first = await signer.transact(w3, factory.constructor())
    old = await w3.eth.get_transaction(first)  # type: ignore[arg-type]
    assert not signer.due_for_replacement(first)
    clock.now += 2
    assert signer.due_for_replacement(first)
    second = await signer.replace(w3, first)
    assert second is not None
    new = await w3.eth.get_transaction(second)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="not found"):
        await w3.eth.get_transaction(first)  # type: ignore[arg-type]  # the pool replaced it
    assert new["nonce"] == old["nonce"] == 0
    assert new["maxFeePerGas"] >= old["maxFeePerGas"] * 1.25
    assert new["maxPriorityFeePerGas"] >= old["maxPriorityFeePerGas"] * 1.25
    capped = LocalSigner(account, max_fee_wei=new["maxFeePerGas"])
    assert await capped.replace(w3, second) is None  # the next bump would pass the cap
    await w3.provider.disconnect()


async def test_a_node_down_and_back_loses_no_anchor_and_keeps_the_nonces(
    keyless: AnvilNode, account: LocalAccount, ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    await fund(keyless, account.address)
    chain = await deployed_by(keyless, LocalSigner(account))
    await seal(ledger, writer_key)
    await anchor_pending_once(ledger, chain)
    keyless.stop()
    await seal(ledger, writer_key)
    await seal(ledger, writer_key)
    progress = await anchor_pending_once(ledger, chain)
    assert progress.error == "anchor.unreachable"
    keyless.start()  # same port, state file kept (balances, contract, nonces)
    for _ in range(3):
        await anchor_pending_once(ledger, chain)
    rows = await jobs()
    assert [job["status"] for job in rows] == ["confirmed"] * 3
    nonces = [(await transaction(chain, job["tx_hash"]))["nonce"] for job in rows]
    assert nonces == [2, 3, 4]
    await chain.close()


async def test_free_gas_sends_legacy_zero_price_transactions_from_an_unfunded_account(
    tmp_path: Path, account: LocalAccount, ledger: Ledger, writer_key: Ed25519PrivateKey
) -> None:
    """Besu with ``--min-gas-price=0`` and no base fee: the account needs no ether at all."""
    node = start_anvil(tmp_path, "--base-fee", "0", "--gas-price", "0")
    try:
        signer = LocalSigner(account, gas="free")
        chain = await deployed_by(node, signer)
        await seal(ledger, writer_key)
        await anchor_pending_once(ledger, chain)
        await anchor_pending_once(ledger, chain)
        job = (await jobs())[0]
        assert job["status"] == "confirmed"
        tx = await transaction(chain, job["tx_hash"])
        assert tx["type"] == 0 and tx["gasPrice"] == 0 and tx["from"] == account.address
        assert await chain.w3.eth.get_balance(account.address) == 0
        # a zero-price transaction cannot be outbid: it is left to the network
        assert await signer.replace(chain.w3, job["tx_hash"]) is None
        await chain.close()
    finally:
        node.stop()


def test_the_signer_never_shows_its_key(account: LocalAccount) -> None:
    signer = LocalSigner(account)
    key_hex = account.key.hex()
    assert key_hex.removeprefix("0x") not in repr(signer) and account.address in repr(signer)
    with pytest.raises(ValueError, match="gas mode"):
        LocalSigner(account, gas="cheap")  # type: ignore[arg-type]


def _abi() -> list[dict[str, Any]]:
    from ledger.evm.anchor import load_artifact

    return load_artifact().abi


def _bytecode() -> str:
    from ledger.evm.anchor import load_artifact

    return load_artifact().bytecode
