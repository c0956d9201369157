"""Consent on the ledger, end to end through the service (no HTTP), as ratios to baselines measured
in the same run.

    .venv/bin/python scripts/bench/bench_consent.py [--events 20000] [--approvals 300] \
        [--postgres URL]

Measures, on a SQLite file and on PostgreSQL when reachable:
- relay: ledger appends/s with receipts stored (outbox rows → signed batch → append → receipts),
  against raw Ed25519 verification (the ceiling if every entry were verified once);
- proofs/s: grant history proofs served (``history_proof``) and verified (``verify_history``);
- chain transactions per 10,000 consent events (in-process eth-tester chain), relayed in
  batches of 1,000 and sealed after each: must equal the number of blocks;
- approval latency (median, p99) with the relay and sealer running, with the chain node up and
  with it down (a dead RPC URL), against one bare SQL round trip in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ecard.auth import ClientPrincipal, HolderPrincipal, OperatorPrincipal
from ecard.consent import schemas
from ecard.consent.ledger_bridge import RELAY_BATCH, background, consent_ledger, drain, relay_once
from ecard.consent.scopes import SCOPES
from ecard.consent.service import ConsentService, seed_demo_data
from ecard.consent.tables import Consent, ConsentEvent
from ecard.crypto.identity import check_digit
from ecard.crypto.keyring import Keyring
from ecard.platform import Platform, open_platform
from ecard.registry import schemas as registry_schemas
from ecard.registry.holder_password import provision_password
from ecard.registry.service import AccessService, RegistryService
from ecard.settings import load_settings
from ecard.store import db
from ecard.store.keyfiles import save_keyring
from ledger.verify import verify_history

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def ed25519_verify_rate(seconds: float = 1.0) -> float:
    key = Ed25519PrivateKey.generate()
    message = bytes(120)
    signature, public = key.sign(message), key.public_key()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            public.verify(signature, message)
        count += 200
    return count / elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: the bench holder's 电子社保卡密码 (each approval checks it: one argon2id verification)
BENCH_PASSWORD = "482915"


class Actors:
    def __init__(
        self, party: ClientPrincipal, holder: HolderPrincipal, identity_number: str
    ) -> None:
        self.party, self.holder, self.identity_number = party, holder, identity_number


async def make_actors(platform: Platform) -> Actors:
    operator = OperatorPrincipal("bench", "bench", "admin")
    first17 = "33010219900307" + f"{uuid.uuid4().int % 1000:03d}"
    number = first17 + check_digit(first17)
    registry = RegistryService(platform)
    person = await registry.create_person(
        registry_schemas.PersonCreate(
            name="张小三", gender="1", identity_number=number, region="330000"
        ),
        operator,
    )
    card = await registry.create_card(
        registry_schemas.CardCreate(
            person_id=person.id,
            card_number="C" + uuid.uuid4().hex[:10].upper(),
            region="330000",
            chip_serial=uuid.uuid4().hex[:16].upper(),
            identification_code=uuid.uuid4().hex[:24].upper(),
            issue_date=dt.date(2024, 1, 1),
            expiry_date=dt.date(2034, 1, 1),
        ),
        operator,
    )
    await seed_demo_data(platform, person.id)
    await provision_password(
        platform, person.id, BENCH_PASSWORD, operator.actor
    )  # approvals step up with it
    view = await AccessService(platform).create_client(
        registry_schemas.ClientCreate(
            kind="relying_party", name=f"bench-rp-{uuid.uuid4().hex[:6]}", entitlements=list(SCOPES)
        ),
        "operator:bench",
    )
    party = ClientPrincipal(view.id, view.kind, view.name, ("*",), tuple(view.entitlements))
    return Actors(party, HolderPrincipal("bench", "bench", card.id, "bench"), number)


def request(actors: Actors) -> schemas.RequestCreate:
    return schemas.RequestCreate(
        holder=schemas.HolderRef(actors.identity_number),
        scopes=["card.status"],
        purpose_code="loan_application",
        duration_seconds=86_400,
    )


async def open_bench_platform(
    database_url: str, keys_dir: str, rpc_url: str | None = None
) -> Platform:
    environ = {
        "ECARD_DATABASE_URL": database_url,
        "ECARD_KEYS_DIR": keys_dir,
        "ECARD_LOG_LEVEL": "ERROR",
        "ECARD_LEDGER_SEAL_INTERVAL": "1.0",
    }
    if rpc_url:
        environ["ECARD_LEDGER_RPC_URL"] = rpc_url
    settings = load_settings(environ)
    return await open_platform(settings, migrate=True)


async def fill_outbox(platform: Platform, actors: Actors, events: int) -> None:
    """``events`` committed outbox rows (four events per consent, as
    request/grant/access/revoke)."""
    service = ConsentService(platform)
    consent_ids = [
        (await service.create_request(actors.party, request(actors))).id
        for _ in range(max(1, events // 4))
    ]
    await drain(platform)
    commitments = {
        row["id"]: bytes(row["commitment"])
        for row in await Consent.select(Consent.id, Consent.commitment)
    }
    rows = [
        ConsentEvent(
            consent=consent_ids[i % len(consent_ids)],
            event="accessed",
            time_ms=int(time.time() * 1000),
            relying_party=actors.party.id,
            commitment=commitments[consent_ids[i % len(consent_ids)]],
        )
        for i in range(events)
    ]
    for start in range(0, len(rows), 2000):
        await ConsentEvent.insert(*rows[start : start + 2000])


async def bench_relay_and_proofs(
    name: str, database_url: str, keys_dir: str, events: int, baseline: float
) -> dict:
    platform = await open_bench_platform(database_url, keys_dir)
    try:
        actors = await make_actors(platform)
        await fill_outbox(platform, actors, events)
        start = time.perf_counter()
        appended = await drain(platform)
        relay_rate = appended / (time.perf_counter() - start)
        ledger = await consent_ledger(platform)
        await ledger.seal()
        seqs = [
            row["seq"]
            for row in await ConsentEvent.select(ConsentEvent.seq)
            .order_by(ConsentEvent.id, ascending=False)
            .limit(300)
        ]
        start = time.perf_counter()
        histories = [await ledger.history_proof(seq) for seq in seqs]
        served = len(histories) / (time.perf_counter() - start)
        start = time.perf_counter()
        for history in histories:
            verify_history(history, ledger.public_key)
        verified = len(histories) / (time.perf_counter() - start)
        entries_per_history = statistics.mean(len(h.entries) for h in histories)
        print(
            f"[{name}] relay: {appended} appends with receipts in batches of {RELAY_BATCH:,}: "
            f"{relay_rate:,.0f}/s "
            f"({relay_rate / baseline:.2f}× raw Ed25519 verify)"
        )
        print(
            f"[{name}] history proofs (≈{entries_per_history:.0f} entries each): served "
            f"{served:,.0f}/s, verified {verified:,.0f}/s"
        )
        return {
            "relay_per_s": relay_rate,
            "proofs_served_per_s": served,
            "proofs_verified_per_s": verified,
        }
    finally:
        await platform.close()


async def bench_chain_transactions(database_url: str, keys_dir: str, events: int = 10_000) -> dict:
    """Anchor 10,000 events relayed and sealed 1,000 at a time on an in-process chain
    (eth-tester)."""
    from web3 import AsyncWeb3
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    from ledger.evm.anchor import ChainAnchor, anchor_pending_once, deploy_contract

    platform = await open_bench_platform(database_url, keys_dir)
    try:
        actors = await make_actors(platform)
        ledger = await consent_ledger(platform)
        w3 = AsyncWeb3(AsyncEthereumTesterProvider())
        admin = (await w3.eth.accounts)[0]
        chain = ChainAnchor(w3, await deploy_contract(w3, admin), admin)
        await chain.grant_anchorer(admin, admin)
        await fill_outbox(platform, actors, events)  # relays and seals the requests made on the way
        await ledger.seal()
        await anchor_pending_once(ledger, chain)
        before, blocks_before = (
            await w3.eth.get_transaction_count(admin),
            (await ledger.latest_block()).number,
        )
        while await relay_once(
            platform, limit=1000
        ):  # 1,000 at a time, sealed after each (a 1 s sealer at 1,000/s)
            await ledger.seal()
        progress = await anchor_pending_once(ledger, chain, limit=1000)
        sent = await w3.eth.get_transaction_count(admin) - before
        blocks = (await ledger.latest_block()).number - blocks_before
        print(
            f"chain: {events:,} consent events → {blocks} blocks → {sent} chain transactions "
            f"(confirmed {progress.confirmed})"
        )
        return {"events": events, "blocks": blocks, "transactions": sent}
    finally:
        await platform.close()


async def bench_approvals(
    database_url: str, keys_dir: str, approvals: int, rpc_url: str | None, label: str
) -> dict:
    platform = await open_bench_platform(database_url, keys_dir, rpc_url)
    try:
        actors = await make_actors(platform)
        service = ConsentService(platform)
        pending = [
            (await service.create_request(actors.party, request(actors))).id
            for _ in range(approvals)
        ]
        async with background(platform):  # relay, sealer and (with an RPC URL) the anchor worker
            round_trips = []
            for _ in range(200):
                start = time.perf_counter()
                await db.ping(platform.engine)
                round_trips.append(time.perf_counter() - start)
            latencies = []
            for consent_id in pending:
                start = time.perf_counter()
                await service.approve(
                    actors.holder, consent_id, schemas.Approval(password=BENCH_PASSWORD)
                )
                latencies.append(time.perf_counter() - start)
        latencies.sort()
        median, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
        base = statistics.median(round_trips)
        print(
            f"approval latency, {label}: median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms "
            f"({median / base:.1f}× one SQL round trip of {base * 1000:.3f} ms)"
        )
        return {"median_ms": median * 1000, "p99_ms": p99 * 1000, "sql_round_trip_ms": base * 1000}
    finally:
        await platform.close()


def postgres_database(server_url: str) -> str | None:
    """A fresh database on the server, or None when it cannot be reached."""
    from urllib.parse import urlparse

    import asyncpg

    name = f"ecard_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url, timeout=2)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    return urlparse(server_url)._replace(path=f"/{name}").geturl()


def drop_database(server_url: str, database_url: str) -> None:
    from urllib.parse import urlparse

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(
                f'DROP DATABASE IF EXISTS "{urlparse(database_url).path.lstrip("/")}" WITH (FORCE)'
            )
        finally:
            await conn.close()

    asyncio.run(drop())


def anvil_node(tmp: Path):
    try:
        from tests.ledger.chain import AnvilNode, anvil_binary
    except ImportError:
        return None
    binary = anvil_binary()
    if binary is None:
        return None
    node = AnvilNode(binary, tmp / "anvil.json")
    node.start()
    return node


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--approvals", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("ECARD_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-consent-"))
    keys_dir = str(tmp / "keys")
    save_keyring(keys_dir, Keyring.create(["330000"]))
    results: dict[str, object] = {}
    baseline = ed25519_verify_rate()
    print(f"baseline: raw Ed25519 verify {baseline:,.0f}/s (one core)")
    results["ed25519_verify_per_s"] = baseline
    backends = [("sqlite", f"sqlite:///{tmp}/relay.db")]
    if pg := postgres_database(args.postgres):
        backends.append(("postgres", pg))
    else:
        print(f"PostgreSQL at {args.postgres} not reachable: skipped")
    for name, url in backends:
        results[f"{name}_relay"] = asyncio.run(
            bench_relay_and_proofs(name, url, keys_dir, args.events, baseline)
        )
    if pg:
        drop_database(args.postgres, pg)
    results["chain"] = asyncio.run(bench_chain_transactions(f"sqlite:///{tmp}/chain.db", keys_dir))
    node = anvil_node(tmp)
    try:
        up_url = node.url if node else None
        label_up = "chain node up (anvil)" if node else "no chain configured (anvil not installed)"
        results["approval_chain_up"] = asyncio.run(
            bench_approvals(f"sqlite:///{tmp}/up.db", keys_dir, args.approvals, up_url, label_up)
        )
    finally:
        if node:
            node.stop()
    dead = f"http://127.0.0.1:{free_port()}"
    results["approval_chain_down"] = asyncio.run(
        bench_approvals(
            f"sqlite:///{tmp}/down.db", keys_dir, args.approvals, dead, "chain node down"
        )
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
