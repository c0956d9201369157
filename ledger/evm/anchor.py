"""Anchoring sealed blocks on an EVM chain (web3.py 8, async) through a transactional outbox.

Sealing writes a ``ledger_anchor`` job in the sealing transaction; ``anchor_pending_once`` sends
one ``LedgerAnchor.anchor`` transaction per job, in block order, records its hash, then its chain
block and confirmations.  A node that is down or slow only delays anchoring: appends and seals
never wait for it, and the jobs catch up when it returns.  Before sending, the contract is asked
whether the block is already anchored (e.g. the worker died after sending), so a block never gets
a second transaction from a retry.

Transactions come from a :class:`~ledger.evm.sender.LocalSigner` (the platform's own account,
signed locally: production) or the node's unlocked account (development nodes); see
:mod:`ledger.evm.sender` for nonces, fees and the replacement of stuck transactions.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import TransactionNotFound

from ledger.errors import AnchorError
from ledger.evm import RECURSION_LIMIT
from ledger.evm.sender import LocalSigner, NodeAccount
from ledger.log import Ledger
from ledger.tables import LedgerAnchor
from ledger.verify import ChainRecord

sys.setrecursionlimit(RECURSION_LIMIT)  # web3's py_ecc raised it (see ledger.evm)

ARTIFACT = Path(__file__).with_name("LedgerAnchor.json")
PENDING, SENT, CONFIRMED, CONFLICT = "pending", "sent", "confirmed", "conflict"
logger = logging.getLogger("ledger.anchor")


class Artifact(msgspec.Struct, frozen=True):
    contractName: str
    abi: list[dict[str, Any]]
    bytecode: str


class AnchorProgress(msgspec.Struct):
    """What one pass of the worker did; ``error`` is an ``anchor.*`` code when the chain failed."""

    sent: int = 0
    confirmed: int = 0
    waiting: int = 0
    error: str | None = None


@cache
def load_artifact() -> Artifact:
    """The committed ABI and bytecode (rebuild with scripts/build_contract.sh)."""
    return msgspec.json.decode(ARTIFACT.read_bytes(), type=Artifact)


def connect(rpc_url: str, *, timeout: float = 10.0) -> AsyncWeb3[AsyncHTTPProvider]:
    """An async web3 on a JSON-RPC URL.  Who signs is the sender's business (:class:`ChainAnchor`
    takes a :class:`LocalSigner` or the node's unlocked account)."""
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


async def _chain_call(awaitable: Any) -> Any:
    """Await a web3 call, turning every driver's failure into a typed ``AnchorError``."""
    try:
        return await awaitable
    except (OSError, TimeoutError) as exc:
        raise AnchorError("anchor.unreachable", f"the chain node cannot be reached: {exc}") from exc
    except AnchorError:
        raise
    except Exception as exc:  # aiohttp, web3 and eth-tester each raise their own types
        name = type(exc).__name__
        if "Connect" in name or "Timeout" in name or "ServerDisconnected" in name:
            raise AnchorError(
                "anchor.unreachable", f"the chain node cannot be reached: {name}"
            ) from exc
        raise AnchorError("anchor.rejected", f"the chain refused the call: {name}: {exc}") from exc


Sender = LocalSigner | NodeAccount


def as_sender(sender: str | Sender) -> Sender:
    """An address string means the node's unlocked account."""
    return NodeAccount(sender) if isinstance(sender, str) else sender


class Deployment(msgspec.Struct, frozen=True):
    """Where a LedgerAnchor contract was deployed: what ``ECARD_LEDGER_*`` settings name."""

    chain_id: int
    address: str
    block: int
    tx_hash: str
    admin: str


async def deploy(w3: AsyncWeb3[Any], admin: str | Sender, *, timeout: float = 120.0) -> Deployment:
    """Deploy LedgerAnchor from ``admin`` (its admin) and wait for the receipt."""
    sender = as_sender(admin)
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = await _chain_call(sender.transact(w3, factory.constructor()))
    receipt = await _chain_call(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout))
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise AnchorError("anchor.rejected", f"the deployment {tx_hash} reverted")
    return Deployment(
        int(await _chain_call(w3.eth.chain_id)),
        str(receipt["contractAddress"]),
        int(receipt["blockNumber"]),
        tx_hash,
        sender.address,
    )


async def deploy_contract(w3: AsyncWeb3[Any], admin: str | Sender) -> str:
    """Deploy LedgerAnchor with ``admin`` as its admin; returns the contract address."""
    return (await deploy(w3, admin)).address


class ChainAnchor:
    """The LedgerAnchor contract at ``address``, used by ``sender`` (which must hold the anchorer
    role): a :class:`LocalSigner`, or an address string for the node's unlocked account.  Also
    the audit's ``AnchorReader``."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        address: str,
        sender: str | Sender,
        *,
        confirmations: int = 1,
        from_block: int = 0,
    ) -> None:
        self.w3 = w3
        self.signer = as_sender(sender)
        self.sender = self.signer.address
        self.contract: AsyncContract = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(address), abi=load_artifact().abi
        )
        self.confirmations = confirmations
        self.from_block = from_block

    async def close(self) -> None:
        """Release the provider's HTTP session (in-process providers hold none)."""
        if isinstance(self.w3.provider, AsyncHTTPProvider):
            await self.w3.provider.disconnect()

    async def _admin_call(self, call: Any, admin: str | Sender) -> None:
        tx_hash = await _chain_call(as_sender(admin).transact(self.w3, call))
        receipt = await _chain_call(self.w3.eth.wait_for_transaction_receipt(tx_hash))
        if receipt["status"] != 1:
            raise AnchorError("anchor.rejected", f"the admin transaction {tx_hash} reverted")

    async def grant_anchorer(self, account: str, admin: str | Sender) -> None:
        await self._admin_call(self.contract.functions.grantAnchorer(account), admin)

    async def revoke_anchorer(self, account: str, admin: str | Sender) -> None:
        await self._admin_call(self.contract.functions.revokeAnchorer(account), admin)

    async def transfer_admin(self, new_admin: str, admin: str | Sender) -> None:
        await self._admin_call(
            self.contract.functions.transferAdmin(AsyncWeb3.to_checksum_address(new_admin)), admin
        )

    async def is_anchorer(self, account: str) -> bool:
        call = self.contract.functions.isAnchorer(AsyncWeb3.to_checksum_address(account))
        return bool(await _chain_call(call.call()))

    async def has_code(self) -> bool:
        """Whether a contract lives at the address on this chain (a wrong network has none)."""
        return len(await _chain_call(self.w3.eth.get_code(self.contract.address))) > 0

    async def head(self) -> int:
        return int(await _chain_call(self.w3.eth.block_number))

    async def root_of(self, block_number: int) -> bytes | None:
        root = bytes(await _chain_call(self.contract.functions.rootOf(block_number).call()))
        return None if root == bytes(32) else root

    async def anchored(self, block_number: int) -> ChainRecord | None:
        """The BlockAnchored event of ``block_number``, if the chain has one."""
        logs = await _chain_call(
            self.contract.events.BlockAnchored.get_logs(
                argument_filters={"blockNumber": block_number}, from_block=self.from_block
            )
        )
        if not logs:
            return None
        event = logs[0]
        return ChainRecord(
            event.args.blockNumber,
            bytes(event.args.root),
            event.args.treeSize,
            bytes(event.args.prevHash),
            event.transactionHash.to_0x_hex(),
        )

    async def send(
        self,
        block_number: int,
        root: bytes,
        tree_size: int,
        prev_hash: bytes,
        *,
        in_flight: bool = False,
    ) -> str:
        """Send ``anchor(...)``; ``in_flight`` says earlier anchors of this sender are unmined."""
        call = self.contract.functions.anchor(block_number, root, tree_size, prev_hash)
        hex_hash: str = await _chain_call(self.signer.transact(self.w3, call, in_flight=in_flight))
        return hex_hash

    async def unrecorded_in_flight(self, recorded: int) -> bool:
        """True when the node holds more unmined transactions from a locally signing sender than
        the ``recorded`` ones the outbox knows: a worker sent one and stopped before recording
        it.  Sending now would race it (and revert); the caller waits, for at most the signer's
        ``replace_after``."""
        if not isinstance(self.signer, LocalSigner):
            return False
        blocked = await _chain_call(self.signer.in_flight(self.w3)) > recorded
        waited_enough = self.signer.blocked_long_enough(blocked)  # also resets when not blocked
        return blocked and not waited_enough

    async def replace_if_stuck(self, tx_hash: str) -> str | None:
        """A replacement for ``tx_hash`` when it has waited too long (locally signing senders)."""
        if not isinstance(self.signer, LocalSigner) or not self.signer.due_for_replacement(tx_hash):
            return None
        replaced: str | None = await _chain_call(self.signer.replace(self.w3, tx_hash))
        return replaced

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The mined transaction's receipt, or None while it is not mined."""
        try:
            # tx_hash is 0x-hex (eth_typing's HexStr; eth-typing is not a declared dependency)
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            return dict(await _chain_call(receipt))
        except AnchorError as exc:
            if isinstance(exc.__cause__, TransactionNotFound):
                return None
            raise

    async def transaction_known(self, tx_hash: str) -> bool:
        """False when the node has forgotten the transaction (dropped from its pool)."""
        try:
            await _chain_call(self.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
        except AnchorError as exc:
            if isinstance(exc.__cause__, TransactionNotFound):
                return False
            raise
        return True


async def _update(block_number: int, ledger: Ledger, **values: Any) -> None:
    values["updated_ms"] = int(ledger.clock() * 1000)
    await LedgerAnchor.update({getattr(LedgerAnchor, k): v for k, v in values.items()}).where(
        LedgerAnchor.block_number == block_number
    )


async def anchor_pending_once(
    ledger: Ledger, chain: ChainAnchor, *, limit: int = 100
) -> AnchorProgress:
    """One pass over the outbox, oldest block first: send what is pending, follow what was sent.

    On PostgreSQL the pass holds a transaction-level advisory lock, so when several processes run
    a worker only one sends and records at a time: two would each send a transaction for the same
    block, and the loser's (reverted) hash could overwrite the winner's on a confirmed job.  A
    process that does not get the lock skips the pass."""
    if ledger.engine.engine_type == "postgres":
        async with ledger.engine.transaction():
            rows = await LedgerAnchor.raw(
                "SELECT pg_try_advisory_xact_lock({}) AS locked", _ANCHOR_LOCK
            )
            if not rows[0]["locked"]:
                return AnchorProgress()
            return await _anchor_pass(ledger, chain, limit)
    return await _anchor_pass(ledger, chain, limit)


_ANCHOR_LOCK = 0x6C67616E  # PostgreSQL advisory lock id ("lgan"): one anchoring pass at a time


async def _anchor_pass(ledger: Ledger, chain: ChainAnchor, limit: int) -> AnchorProgress:
    progress = AnchorProgress()
    jobs = (
        await LedgerAnchor.select()
        .where(LedgerAnchor.status.is_in([PENDING, SENT]))
        .order_by(LedgerAnchor.block_number)
        .limit(limit)
    )
    current: int | None = None
    unmined: list[int] = []  # jobs of this pass whose transaction is sent and not yet mined
    try:
        for job in jobs:
            current = job["block_number"]
            status = await _advance(ledger, chain, job, progress, unmined)
            if status == PENDING:
                break  # later blocks must wait for this one (the contract takes them in order)
    except AnchorError as exc:
        progress.error = exc.code
        if current is not None:
            await _update(current, ledger, last_error=exc.message[:500])
    return progress


async def _advance(
    ledger: Ledger,
    chain: ChainAnchor,
    job: dict[str, Any],
    progress: AnchorProgress,
    unmined: list[int],
) -> str:
    number, root = job["block_number"], bytes(job["root"])
    if job["status"] == PENDING:
        on_chain = await chain.root_of(number)
        if on_chain is not None and on_chain != root:
            await _update(
                number,
                ledger,
                status=CONFLICT,
                last_error="the chain holds another root for this block",
            )
            return CONFLICT
        if on_chain is not None:  # anchored before, e.g. by a worker that died after sending
            record = await chain.anchored(number)
            tx_hash = record.tx_hash if record else None
        else:
            if await chain.unrecorded_in_flight(len(unmined)):
                await _update(
                    number,
                    ledger,
                    last_error="waiting: the anchoring account has an unmined transaction no job "
                    "records (a worker stopped after sending it?)",
                )
                return PENDING
            tx_hash = await chain.send(
                number, root, job["tree_size"], bytes(job["prev_hash"]), in_flight=bool(unmined)
            )
            progress.sent += 1
        await _update(
            number,
            ledger,
            status=SENT,
            tx_hash=tx_hash,
            attempts=job["attempts"] + 1,
            last_error=None,
        )
        job = {**job, "status": SENT, "tx_hash": tx_hash}
    receipt = await chain.receipt(job["tx_hash"]) if job["tx_hash"] else None
    if receipt is None and job["tx_hash"] and not await chain.transaction_known(job["tx_hash"]):
        record = await chain.anchored(number) if await chain.root_of(number) else None
        if record is None:
            await _update(number, ledger, status=PENDING, last_error="the transaction was dropped")
            return PENDING
        # another transaction for this block was mined (the original of a replacement, or
        # one sent by a worker that stopped before recording it): adopt it
        await _update(number, ledger, tx_hash=record.tx_hash)
        job = {**job, "tx_hash": record.tx_hash}
        receipt = await chain.receipt(record.tx_hash)
    if receipt is None:
        if job["tx_hash"] and (replacement := await chain.replace_if_stuck(job["tx_hash"])):
            await _update(
                number,
                ledger,
                tx_hash=replacement,
                attempts=job["attempts"] + 1,
                last_error=f"replaced the stuck transaction {job['tx_hash']}",
            )
        unmined.append(number)
        progress.waiting += 1
        return SENT
    if receipt["status"] != 1:
        await _update(
            number, ledger, status=PENDING, last_error="the anchoring transaction reverted"
        )
        return PENDING
    confirmations = max(0, await chain.head() - receipt["blockNumber"] + 1)
    done = confirmations >= chain.confirmations
    await _update(
        number,
        ledger,
        tx_hash=job["tx_hash"],  # the one whose receipt this is
        chain_block=receipt["blockNumber"],
        confirmations=confirmations,
        status=CONFIRMED if done else SENT,
    )
    if done:
        progress.confirmed += 1
    else:
        progress.waiting += 1
    return CONFIRMED if done else SENT


async def run_anchor_worker(
    ledger: Ledger, chain: ChainAnchor, stop: asyncio.Event, *, interval: float = 1.0
) -> None:
    """Drain the outbox every ``interval`` seconds until ``stop`` is set; chain failures are
    recorded on the job and retried on the next pass."""
    while not stop.is_set():
        try:
            await anchor_pending_once(ledger, chain)
        except Exception:  # the database is briefly away: the jobs wait in the outbox
            logger.exception("anchoring pass failed; retrying in %.1f s", interval)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
