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
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from ecard.consent.schemas import LedgerVerification
from ecard.consent.tables import ChainDeployment, ConsentEvent
from ecard.crypto.keyring import anchor_private_key, ledger_keys
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.settings import Settings
from ledger import EntryBody, Event, Ledger, LedgerError, Receipt, Unavailable, sign_batch
from ledger.tables import LedgerEntry
from ledger.verify import ReceiptCheck, audit, check_receipt

if TYPE_CHECKING:  # web3 is imported only where a chain is configured (open_chain)
    from web3 import AsyncWeb3

    from ledger.evm.anchor import ChainAnchor
    from ledger.evm.sender import LocalSigner

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
    probe: AsyncWeb3[Any] | None = None  # the readiness probe's chain client, made on first use


class RelayProgress(msgspec.Struct):
    appended: int = 0
    batches: int = 0


def runtime(platform: Platform) -> LedgerRuntime:
    """The platform's ledger runtime, made once (the ledger keeps its Merkle tree in memory).

    The log key and the consent writer's key are two trust domains (``ECARD_LEDGER_LOG_KEY``,
    ``ECARD_LEDGER_WRITER_KEY``): derived from the keyring in development, required and distinct
    in production (a ``KeyringError`` here stops start-up and names the missing setting)."""
    state = platform.__dict__.get("consent_ledger")
    if state is None:
        settings = platform.settings
        log_key, writer_key = ledger_keys(
            platform.keys.ring.secrets,
            f"writer:{WRITER_ID}",
            log_key=settings.ledger_log_key,
            writer_key=settings.ledger_writer_key,
            required=settings.env == "prod",
        )
        state = LedgerRuntime(Ledger(platform.engine, log_key), writer_key)
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


def write_transaction(engine: Engine[Any]) -> Any:
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
            "WHERE seq IS NULL ORDER BY id LIMIT {}",
            int(limit),
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


async def _store_receipts(engine: Engine[Any], ids: list[int], receipts: list[Receipt]) -> None:
    """One statement for the whole batch on the transaction's own driver connection (piccolo's
    query builder would cost more per row than the append itself)."""
    transaction = engine.current_transaction.get()
    if transaction is None:
        raise RuntimeError("_store_receipts runs inside the relay's transaction")
    connection = transaction.connection
    seqs = [receipt.seq for receipt in receipts]
    encoded = [msgspec.msgpack.encode(receipt) for receipt in receipts]
    if engine.engine_type == "postgres":
        await connection.execute(
            "UPDATE consent_event AS e SET seq = v.seq, receipt = v.receipt "
            "FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS v(id, seq, receipt) "
            "WHERE e.id = v.id",
            ids,
            seqs,
            encoded,
        )
    else:
        await connection.executemany(
            "UPDATE consent_event SET seq = ?, receipt = ? WHERE id = ?",
            list(zip(seqs, encoded, ids, strict=True)),
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


def anchoring_problem(settings: Settings) -> str | None:
    """Why anchoring must not start with these settings, or None.  Production anchors only from
    its own account into a contract deployed beforehand (``ecard ledger deploy``): it never sends
    from a node's account and never deploys on first use."""
    if settings.env != "prod" or not settings.ledger_rpc_url:
        return None
    missing = [
        name
        for name, value in (
            ("ECARD_LEDGER_ANCHOR_KEY", settings.ledger_anchor_key),
            ("ECARD_LEDGER_CONTRACT", settings.ledger_contract),
            ("ECARD_LEDGER_CHAIN_ID", settings.ledger_chain_id),
        )
        if not value
    ]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not set: in production the service anchors only from its own "
        "account into a contract deployed beforehand; run `ecard ledger deploy` and set what it "
        "prints"
    )


def anchor_signer(settings: Settings) -> LocalSigner | None:
    """The platform's anchoring account (``ECARD_LEDGER_ANCHOR_KEY``), or None when unset."""
    if not settings.ledger_anchor_key:
        return None
    from eth_account import Account

    from ledger.evm.sender import LocalSigner

    fee_cap = settings.ledger_max_fee_gwei
    return LocalSigner(
        Account.from_key(anchor_private_key(settings.ledger_anchor_key)),
        gas=settings.ledger_gas,
        replace_after=settings.ledger_replace_after,
        max_fee_wei=None if fee_cap is None else int(fee_cap * 10**9),
    )


async def open_chain(platform: Platform, *, deploy: bool = True) -> ChainAnchor | None:
    """The anchoring contract on ``settings.ledger_rpc_url``, ready to anchor (``deploy``) or to be
    read by the audit (``deploy=False``; None when no contract is known for this chain).

    The contract is ``ECARD_LEDGER_CONTRACT`` when set (checked: code at the address, the right
    chain, the sender holds the anchorer role); otherwise, in development only, it is deployed on
    first use and its address kept per chain id, so every worker and the audit find the same one.
    The sender is the configured account (``ECARD_LEDGER_ANCHOR_KEY``, signing locally) or, in
    development without one, the node's first unlocked account."""
    from ledger.evm.anchor import connect

    settings = platform.settings
    if deploy and (problem := anchoring_problem(settings)):
        raise LedgerError("anchor.not_configured", problem)
    w3 = connect(settings.ledger_rpc_url or "")
    try:
        chain = await _open_chain(platform, w3, deploy=deploy)
    except BaseException:
        await w3.provider.disconnect()
        raise
    if chain is None:
        await w3.provider.disconnect()
    return chain


async def _open_chain(
    platform: Platform, w3: AsyncWeb3[Any], *, deploy: bool
) -> ChainAnchor | None:
    from ledger.evm.anchor import ChainAnchor, Sender
    from ledger.evm.anchor import deploy as deploy_anchor
    from ledger.evm.sender import NodeAccount

    settings = platform.settings
    try:
        chain_id = int(await w3.eth.chain_id)
        accounts = [] if settings.ledger_anchor_key else list(await w3.eth.accounts)
    except Exception as exc:
        raise LedgerError(
            "anchor.unreachable", f"the chain node cannot be reached: {type(exc).__name__}"
        ) from exc
    if settings.ledger_chain_id is not None and chain_id != settings.ledger_chain_id:
        raise LedgerError(
            "anchor.wrong_chain",
            f"the node serves chain {chain_id}; ECARD_LEDGER_CHAIN_ID: {settings.ledger_chain_id}",
        )
    sender: Sender
    if (signer := anchor_signer(settings)) is not None:
        sender = signer
    elif accounts:
        sender = NodeAccount(accounts[0])
    elif deploy:
        raise LedgerError(
            "anchor.no_account",
            "ECARD_LEDGER_ANCHOR_KEY is not set and the node holds no unlocked account to send "
            "from (production nodes never do)",
        )
    else:  # reading only: any address will do
        sender = NodeAccount("0x" + "00" * 20)
    if settings.ledger_contract:
        chain = ChainAnchor(
            w3, settings.ledger_contract, sender, from_block=settings.ledger_contract_block
        )
        has_code = await chain.has_code()
        anchorer = not deploy or await chain.is_anchorer(chain.sender)
        if not has_code:
            raise LedgerError(
                "anchor.no_contract",
                f"no contract at ECARD_LEDGER_CONTRACT {settings.ledger_contract} on chain "
                f"{chain_id}",
            )
        if not anchorer:
            raise LedgerError(
                "anchor.not_anchorer",
                f"{chain.sender} does not hold the anchorer role in {settings.ledger_contract}: "
                "the contract's admin must grant it (grantAnchorer)",
            )
        return chain
    row = await ChainDeployment.select().where(ChainDeployment.chain_id == chain_id).first()
    if row is None and not deploy:
        return None
    if row is None:
        deployment = await deploy_anchor(w3, sender)
        chain = ChainAnchor(w3, deployment.address, sender, from_block=deployment.block)
        await chain.grant_anchorer(chain.sender, sender)
        try:
            await ChainDeployment.insert(
                ChainDeployment(
                    chain_id=chain_id, address=deployment.address, deploy_block=deployment.block
                )
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
    if problem := anchoring_problem(platform.settings):
        logger.error("anchoring refused to start: %s", problem)
        return
    chain: ChainAnchor | None = None
    while chain is None and not stop.is_set():
        try:
            chain = await open_chain(platform)
        except LedgerError as exc:
            logger.warning("chain not ready (%s: %s); anchoring waits", exc.code, exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    if chain is None:
        return
    from ledger.evm.anchor import run_anchor_worker

    try:
        await run_anchor_worker(ledger, chain, stop, interval=interval)
    finally:
        await chain.close()


# --- readiness -----------------------------------------------------------------------------------

READINESS_TIMEOUT = 2.0


async def ledger_readiness(platform: Platform, timeout: float = READINESS_TIMEOUT) -> str:
    """The ledger's line of ``/readyz``: ``ok …`` only when the chain node answers within
    ``timeout`` seconds on the configured chain id, its latest block is at most
    ``ECARD_LEDGER_MAX_BLOCK_AGE`` old and the oldest unanchored block at most
    ``ECARD_LEDGER_MAX_ANCHOR_LAG``; else ``unavailable: <why>``.  Both report the outbox lag
    (consent events not yet in the log, blocks not yet anchored).  Without a chain configured the
    ledger is local and ``ok (local …)``.  Never raises."""
    try:
        return await asyncio.wait_for(_readiness(platform), timeout)
    except TimeoutError:
        return f"unavailable: the ledger did not answer within {timeout:g} s"
    except LedgerError as exc:
        return f"unavailable: {exc.code}"
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports, it does not raise
        return f"unavailable: {type(exc).__name__}"


async def _readiness(platform: Platform) -> str:
    settings = platform.settings
    unrelayed = await ConsentEvent.count().where(ConsentEvent.seq.is_null())
    if not settings.ledger_rpc_url:
        return f"ok (local; {unrelayed} consent events to relay)"
    if problem := anchoring_problem(settings):
        return f"unavailable: {problem}"
    unanchored, lag = await _anchor_lag(platform)
    outbox = f"{unrelayed} consent events to relay, {unanchored} blocks to anchor"
    if unanchored:
        outbox += f", the oldest sealed {lag:.0f} s ago"
    w3 = _probe_client(platform)
    chain_id = int(await w3.eth.chain_id)
    if settings.ledger_chain_id is not None and chain_id != settings.ledger_chain_id:
        return f"unavailable: the node serves chain {chain_id}, not {settings.ledger_chain_id}"
    head = await w3.eth.get_block("latest")
    age = max(0.0, time.time() - int(head["timestamp"]))
    if settings.ledger_max_block_age and age > settings.ledger_max_block_age:
        return (
            f"unavailable: chain {chain_id}'s latest block {head['number']} is {age:.0f} s old "
            f"(limit {settings.ledger_max_block_age:g} s); {outbox}"
        )
    if unanchored and lag > settings.ledger_max_anchor_lag:
        return (
            f"unavailable: anchoring is {lag:.0f} s behind "
            f"(limit {settings.ledger_max_anchor_lag:g} s); {outbox}"
        )
    return f"ok (chain {chain_id}, block {head['number']} {age:.0f} s old; {outbox})"


async def _anchor_lag(platform: Platform) -> tuple[int, float]:
    """How many sealed blocks wait for their anchor, and how long ago the oldest was sealed
    (``ledger_anchor.status`` is indexed; the waiting jobs are few)."""
    rows = await LedgerEntry.raw(
        "SELECT COUNT(*) AS waiting, MIN(block_number) AS oldest FROM ledger_anchor "
        "WHERE status IN ('pending', 'sent')"
    )
    waiting, oldest = int(rows[0]["waiting"] or 0), rows[0]["oldest"]
    if oldest is None:
        return 0, 0.0
    sealed = await LedgerEntry.raw(
        "SELECT sealed_ms FROM ledger_block WHERE number = {}", int(oldest)
    )
    if not sealed:
        return waiting, 0.0
    return waiting, max(0.0, time.time() - sealed[0]["sealed_ms"] / 1000)


def _probe_client(platform: Platform) -> AsyncWeb3[Any]:
    """One chain client per platform for the probe, each call bounded by its HTTP timeout."""
    state = runtime(platform)
    if state.probe is None:
        from ledger.evm.anchor import connect

        state.probe = connect(platform.settings.ledger_rpc_url or "", timeout=READINESS_TIMEOUT)
    return state.probe


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
        probe, runtime(platform).probe = runtime(platform).probe, None
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.provider.disconnect()
