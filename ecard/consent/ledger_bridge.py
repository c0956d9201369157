"""The consent service's side of the ledger: the platform's ``Ledger`` and writer, the outbox relay,
the sealer, the expiry sweep and the chain anchor worker, run as one ``background(platform)``.

Consent changes never call the ledger directly: they write a ``consent_event`` row in their own
transaction (the outbox).  The relay takes those rows in id order, signs them as one writer batch,
appends the batch and stores each entry's seq and signed receipt — all in one transaction, so an
event is relayed exactly once, and the writer signature and receipt cost once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from ecard.consent.schemas import LedgerVerification
from ecard.consent.tables import ChainDeployment, ConsentEvent
from ecard.errors import AppError
from ecard.platform import Platform
from ledger import EntryBody, Event, Ledger, LedgerError, Receipt, Unavailable, sign_batch
from ledger.tables import LedgerEntry
from ledger.verify import ReceiptCheck, audit, check_receipt

if TYPE_CHECKING:  # web3 is imported only where a chain is configured (open_chain)
    from ledger.evm.anchor import ChainAnchor

WRITER_ID = "consent"
RELAY_BATCH = 4000  # a writer batch may hold 4096; bigger batches amortise signing and receipts
_RELAY_LOCK = 0x65636C72  # PostgreSQL advisory lock id ("eclr"): one relay at a time keeps order
logger = logging.getLogger("ecard.consent.ledger")


@dataclass
class LedgerRuntime:
    """Per-platform ledger state: the log, the writer key and the relay's wake-up signal."""

    ledger: Ledger
    writer_key: Ed25519PrivateKey
    relay_wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer_registered: bool = False


class RelayProgress(msgspec.Struct):
    appended: int = 0
    batches: int = 0


def runtime(platform: Platform) -> LedgerRuntime:
    """The platform's ledger runtime, made once (the ledger keeps its Merkle tree in memory)."""
    state = platform.__dict__.get("consent_ledger")
    if state is None:
        secrets = platform.keys.ring.secrets
        state = LedgerRuntime(
            Ledger(platform.engine, secrets.ledger_key("log")),
            secrets.ledger_key(f"writer:{WRITER_ID}"),
        )
        platform.__dict__["consent_ledger"] = state
    return state


async def consent_ledger(platform: Platform) -> Ledger:
    """The platform's ledger, with the consent writer registered (idempotent)."""
    state = runtime(platform)
    if not state.writer_registered:
        await state.ledger.register_writer(WRITER_ID, state.writer_key.public_key())
        state.writer_registered = True
    return state.ledger


def wake_relay(platform: Platform) -> None:
    runtime(platform).relay_wake.set()


def write_transaction(engine: Engine) -> Any:
    """A transaction that takes SQLite's write lock at once (a deferred one that read first can
    fail to upgrade under load); PostgreSQL keeps READ COMMITTED, as the ledger requires."""
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


def decode_receipt(raw: bytes | None) -> Receipt | None:
    return None if raw is None else msgspec.msgpack.decode(bytes(raw), type=Receipt)


# --- the relay ----------------------------------------------------------------------------------


async def relay_once(platform: Platform, limit: int = RELAY_BATCH) -> int:
    """Append up to ``limit`` outbox events as one signed batch; returns how many were appended."""
    ledger = await consent_ledger(platform)
    engine = platform.engine
    if not await ConsentEvent.exists().where(ConsentEvent.seq.is_null()):
        return 0  # a read first: an idle relay never takes SQLite's write lock
    async with write_transaction(engine):
        if engine.engine_type == "postgres":
            await ConsentEvent.raw("SELECT pg_advisory_xact_lock({})", _RELAY_LOCK)
        rows = await ConsentEvent.raw(
            "SELECT id, event, time_ms, relying_party, commitment FROM consent_event "
            f"WHERE seq IS NULL ORDER BY id LIMIT {int(limit)}"
        )
        if not rows:
            return 0
        bodies = [
            EntryBody(
                Event(row["event"]), row["time_ms"], row["relying_party"], bytes(row["commitment"])
            )
            for row in rows
        ]
        receipts = await ledger.append(sign_batch(WRITER_ID, bodies, runtime(platform).writer_key))
        await _store_receipts(engine, [row["id"] for row in rows], receipts)
    return len(rows)


async def _store_receipts(engine: Engine, ids: list[int], receipts: list[Receipt]) -> None:
    """One statement for the whole batch on the transaction's own driver connection (piccolo's
    query builder would cost more per row than the append itself)."""
    connection = engine.current_transaction.get().connection
    seqs = [receipt.seq for receipt in receipts]
    encoded = [msgspec.msgpack.encode(receipt) for receipt in receipts]
    if engine.engine_type == "postgres":
        await connection.execute(
            "UPDATE consent_event AS e SET seq = v.seq, receipt = v.receipt "
            "FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS v(id, seq, receipt) WHERE e.id = v.id",
            ids,
            seqs,
            encoded,
        )
    else:
        await connection.executemany(
            "UPDATE consent_event SET seq = ?, receipt = ? WHERE id = ?",
            list(zip(seqs, encoded, ids)),
        )


async def drain(platform: Platform) -> int:
    """Relay until the outbox is empty (tests, the CLI and shutdown use it)."""
    total = 0
    while appended := await relay_once(platform):
        total += appended
    return total


async def run_relay(platform: Platform, stop: asyncio.Event, idle: float) -> None:
    """Relay as soon as a consent change is committed (or every ``idle`` seconds)."""
    wake = runtime(platform).relay_wake
    while not stop.is_set():
        wake.clear()
        try:
            await drain(platform)
        except Exception:  # the database is briefly away: the events wait in the outbox
            logger.exception("relaying consent events failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=idle)
    with contextlib.suppress(Exception):
        await drain(platform)


async def run_sealer(platform: Platform, stop: asyncio.Event, interval: float) -> None:
    """Seal every ``interval`` seconds when entries are waiting (and once more when stopped).

    Unlike ``Ledger.run_sealer`` this looks before it locks: on SQLite an idle sealer holding the
    write lock each tick would make other components' deferred transactions fail to upgrade."""
    ledger = runtime(platform).ledger
    while True:
        stopping = stop.is_set()
        try:
            if await _unsealed(ledger):
                await ledger.seal()
        except Exception:  # the database is briefly away: the entries wait for the next tick
            logger.exception("sealing failed; retrying in %.1f s", interval)
        if stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def _unsealed(ledger: Ledger) -> bool:
    rows = await LedgerEntry.raw("SELECT MAX(seq) AS top FROM ledger_entry")
    top = rows[0]["top"] if rows else None
    if top is None:
        return False
    block = await ledger.latest_block()
    return block is None or top >= block.tree_size


# --- the chain -----------------------------------------------------------------------------------


async def open_chain(platform: Platform, *, deploy: bool = True) -> ChainAnchor | None:
    """The anchoring contract on ``settings.ledger_rpc_url``, deployed on first use (None when
    ``deploy`` is off and nothing was deployed on this chain yet).

    Dev nodes (anvil, Besu dev mode) send from their first unlocked account, which is admin and
    anchorer.  The address is kept per chain id so every worker and the audit find the same one."""
    from ledger.evm.anchor import ChainAnchor, connect, deploy_contract

    w3 = connect(platform.settings.ledger_rpc_url or "")
    try:
        chain_id = int(await w3.eth.chain_id)
        sender = (await w3.eth.accounts)[0]
    except Exception as exc:
        await w3.provider.disconnect()
        raise LedgerError(
            "anchor.unreachable", f"the chain node cannot be reached: {type(exc).__name__}"
        ) from exc
    row = await ChainDeployment.select().where(ChainDeployment.chain_id == chain_id).first()
    if row is None and not deploy:
        await w3.provider.disconnect()
        return None
    if row is None:
        deploy_block = int(await w3.eth.block_number)
        address = await deploy_contract(w3, sender)
        chain = ChainAnchor(w3, address, sender, from_block=deploy_block)
        await chain.grant_anchorer(sender, sender)
        try:
            await ChainDeployment.insert(
                ChainDeployment(chain_id=chain_id, address=address, deploy_block=deploy_block)
            )
        except Exception:  # another worker deployed first: use its contract
            row = await ChainDeployment.select().where(ChainDeployment.chain_id == chain_id).first()
            if row is None:
                raise
        else:
            return chain
    return ChainAnchor(w3, row["address"], sender, from_block=row["deploy_block"])


async def run_anchoring(platform: Platform, stop: asyncio.Event, interval: float) -> None:
    """Connect (retrying while the node is down), then drain the anchor outbox until stopped."""
    ledger = await consent_ledger(platform)
    chain: ChainAnchor | None = None
    while chain is None and not stop.is_set():
        try:
            chain = await open_chain(platform)
        except LedgerError as exc:
            logger.warning("chain not ready (%s); anchoring waits", exc.code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    if chain is None:
        return
    from ledger.evm.anchor import run_anchor_worker

    try:
        await run_anchor_worker(ledger, chain, stop, interval=interval)
    finally:
        await chain.close()


async def verify_ledger(platform: Platform, receipt: Receipt | None = None) -> LedgerVerification:
    """Audit the whole log (and every anchor, when a chain is configured and reachable) and
    optionally check that one receipt's promise was kept."""
    ledger = await consent_ledger(platform)
    chain = None
    if platform.settings.ledger_rpc_url:
        with contextlib.suppress(LedgerError):
            chain = await open_chain(platform, deploy=False)
    try:
        report = await audit(ledger, log_public_key=ledger.public_key, chain=chain)
    finally:
        if chain is not None:
            await chain.close()
    check = None if receipt is None else await check_one_receipt(platform, receipt)
    return LedgerVerification(report, report.ok, chain is not None, check)


async def check_one_receipt(platform: Platform, receipt: Receipt) -> ReceiptCheck:
    """``pending`` until sealed, then ``sealed`` with the inclusion proof; a forged receipt or one
    whose promise the log did not keep is refused with its ledger code in the detail."""
    ledger = await consent_ledger(platform)
    try:
        return await check_receipt(ledger, receipt)
    except Unavailable:
        raise AppError("ledger_unavailable", headers={"Retry-After": "60"}) from None
    except LedgerError as exc:
        raise AppError("ledger_receipt_invalid", f"{exc.code}: {exc.message}") from None


# --- lifecycle -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def background(platform: Platform) -> AsyncIterator[None]:
    """Relay, sealer, expiry sweep and (with a chain configured) anchor worker for one process.

    On the way out the relay drains the outbox and the sealer seals once more, so a clean shutdown
    leaves nothing unsealed."""
    from ecard.consent.service import run_expiry_sweep  # the sweep is consent logic

    await consent_ledger(platform)
    settings = platform.settings
    interval = settings.ledger_seal_interval
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_relay(platform, stop, idle=min(interval, 0.5)), name="consent-relay"
        ),
        asyncio.create_task(
            run_expiry_sweep(platform, stop, interval=max(interval, 5.0)), name="consent-expiry"
        ),
    ]
    stop_sealer = asyncio.Event()  # set only after the relay's last drain
    sealer = asyncio.create_task(run_sealer(platform, stop_sealer, interval), name="ledger-sealer")
    if settings.ledger_rpc_url:
        tasks.append(
            asyncio.create_task(run_anchoring(platform, stop, interval), name="ledger-anchor")
        )
    try:
        yield
    finally:
        stop.set()
        wake_relay(platform)
        await asyncio.gather(*tasks, return_exceptions=True)
        stop_sealer.set()
        await asyncio.gather(sealer, return_exceptions=True)
