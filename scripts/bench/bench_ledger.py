"""Throughput of the consent ledger on one core, as ratios to raw signature speed measured in the
same run (the ledger's ceiling if it signed or verified once per entry).

    .venv/bin/python scripts/bench/bench_ledger.py [--entries 20000] [--postgres URL]

Measures: Ed25519 and ES256 sign/verify (the algorithm choice); appends/s with receipts on a SQLite
file and on PostgreSQL when reachable (batch of 1 = one grant per transaction, and batches);
inclusion and consistency proofs/s (served and verified); a restarted process's first proof
against reloading every leaf, and its proofs with tiles read from storage; audit entries/s; chain
transactions per 10,000 events on an in-process EVM (must equal the number of sealed blocks);
seal latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from ledger import EntryBody, Event, Ledger, sign_batch
from ledger.merkle import MerkleTree, verify_consistency, verify_inclusion
from ledger.migrations import migrate
from ledger.tables import LedgerEntry
from ledger.verify import audit

WRITER = "bench-writer"
MESSAGE = bytes(120)


def rate(operation: Callable[[], object], seconds: float = 1.0) -> float:
    """Operations per second of a synchronous operation, over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            operation()
        count += 200
    return count / elapsed


def crypto_baseline() -> dict[str, float]:
    ed, es = Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    ed_sig, es_sig = ed.sign(MESSAGE), es.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    ed_pub, es_pub = ed.public_key(), es.public_key()
    return {
        "Ed25519 sign": rate(lambda: ed.sign(MESSAGE)),
        "Ed25519 verify": rate(lambda: ed_pub.verify(ed_sig, MESSAGE)),
        "ES256 sign": rate(lambda: es.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))),
        "ES256 verify": rate(lambda: es_pub.verify(es_sig, MESSAGE, ec.ECDSA(hashes.SHA256()))),
    }


def bodies(count: int) -> list[EntryBody]:
    return [
        EntryBody(Event.GRANTED, 1_790_000_000_000 + i, "rp-bench", os.urandom(32))
        for i in range(count)
    ]


async def new_ledger(engine: Engine) -> tuple[Ledger, Ed25519PrivateKey]:
    await migrate(engine)
    ledger = Ledger(engine, Ed25519PrivateKey.generate())
    writer = Ed25519PrivateKey.generate()
    await ledger.register_writer(WRITER, writer.public_key())
    return ledger, writer


async def append_rate(
    ledger: Ledger, writer: Ed25519PrivateKey, total: int, batch: int
) -> tuple[float, float]:
    """(log-side appends/s, end-to-end appends/s including the writer's signing)."""
    items = bodies(total)
    start = time.perf_counter()
    batches = [sign_batch(WRITER, items[i : i + batch], writer) for i in range(0, total, batch)]
    signed = time.perf_counter()
    for signed_batch in batches:
        receipts = await ledger.append(signed_batch)
        assert len(receipts) == len(signed_batch.bodies)
    done = time.perf_counter()
    return total / (done - signed), total / (done - start)


async def bench_appends(
    label: str, engine: Engine, entries: int, ed_verify: float, ed_sign: float
) -> Ledger:
    ledger, writer = await new_ledger(engine)
    print(f"\nappends with receipts, {label} (ratios: log-side rate / raw Ed25519 verify, sign)")
    for batch, total in ((1, min(2000, entries)), (100, entries), (1000, entries)):
        log_side, end_to_end = await append_rate(ledger, writer, total, batch)
        print(
            f"  batch {batch:>5}: {log_side:>9,.0f}/s log side ({log_side / ed_verify:5.2f}x "
            "verify, "
            f"{log_side / ed_sign:5.2f}x sign), {end_to_end:>9,.0f}/s with writer signing"
        )
    start = time.perf_counter()
    block = await ledger.seal()
    assert block is not None
    print(
        f"  seal of {block.tree_size:,} new entries: {1000 * (time.perf_counter() - start):.0f} ms"
    )
    return ledger


async def bench_proofs(ledger: Ledger, ed_verify: float) -> None:
    writer = Ed25519PrivateKey.generate()
    await ledger.register_writer("bench-writer-2", writer.public_key())
    for _ in range(3):  # a few more blocks, so consistency proofs span real block boundaries
        await ledger.append(sign_batch("bench-writer-2", bodies(997), writer))
        await ledger.seal()
    blocks = await ledger.blocks()
    latest = blocks[-1]
    sizes = [b.tree_size for b in blocks]
    n = 2000
    start = time.perf_counter()
    proofs = [
        await ledger.inclusion_proof((i * 7919) % latest.tree_size, latest.tree_size)
        for i in range(n)
    ]
    inclusion = n / (time.perf_counter() - start)
    start = time.perf_counter()
    consistency = [
        await ledger.consistency_proof(sizes[i % (len(sizes) - 1)], latest.tree_size)
        for i in range(n)
    ]
    consistent = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for proof in proofs:
        verify_inclusion(proof.seq, latest.tree_size, proof.entry_hash, proof.path, latest.root)
    inclusion_verify = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for proof in consistency:
        verify_consistency(
            proof.first_size, proof.second_size, proof.first_root, proof.second_root, proof.path
        )
    consistency_verify = n / (time.perf_counter() - start)
    print(f"\nproofs over a tree of {latest.tree_size:,} entries (ratio to raw Ed25519 verify)")
    for name, value in (
        ("inclusion proofs served", inclusion),
        ("consistency proofs served", consistent),
        ("inclusion proofs verified", inclusion_verify),
        ("consistency proofs verified", consistency_verify),
    ):
        print(f"  {name:<28} {value:>9,.0f}/s ({value / ed_verify:5.2f}x)")
    await bench_restart(ledger, latest.tree_size, n, ed_verify)
    start = time.perf_counter()
    report = await audit(ledger)
    elapsed = time.perf_counter() - start
    assert report.ok, report.problems
    print(
        f"  full audit: {report.entries:,} entries, {report.blocks} blocks in {elapsed:.2f} s "
        f"({report.entries / elapsed:,.0f} entries/s, {report.entries / elapsed / ed_verify:.2f}x "
        "verify)"
    )


async def bench_restart(ledger: Ledger, size: int, proofs: int, ed_verify: float) -> None:
    """A second process on the same log: it resumes the tree from the stored tiles (the baseline,
    measured here too, is what a restart did before tiles: read every leaf hash and rehash them),
    then serves proofs reading the tiles it lacks from the database."""
    start = time.perf_counter()
    rows = await LedgerEntry.raw(
        "SELECT entry_hash FROM ledger_entry WHERE seq < {} ORDER BY seq", size
    )
    MerkleTree(bytes(row["entry_hash"]) for row in rows).root()
    rehash = time.perf_counter() - start
    restarted = Ledger(ledger.engine, ledger._log_key)  # the same log key, as a second worker has
    start = time.perf_counter()
    await restarted.inclusion_proof(size - 1)
    resume = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(proofs):
        await restarted.inclusion_proof((i * 7919) % size, size)
    cold = proofs / (time.perf_counter() - start)
    tree = restarted._tree
    assert tree is not None
    print(
        f"  a restarted process's first proof: {1000 * resume:.1f} ms (before tiles, reading and "
        f"rehashing every leaf: {1000 * rehash:.0f} ms, {rehash / resume:.0f}x longer)"
    )
    print(
        f"  inclusion proofs served by it, {len(tree._tiles)} of {size // 256} tiles in memory: "
        f"{cold:,.0f}/s ({cold / ed_verify:5.2f}x)"
    )


async def bench_chain(engine: Engine) -> None:
    from web3 import AsyncWeb3
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    from ledger.evm.anchor import ChainAnchor, anchor_pending_once, deploy_contract

    ledger, writer = await new_ledger(engine)
    w3 = AsyncWeb3(AsyncEthereumTesterProvider())
    accounts = list(await w3.eth.accounts)
    chain = ChainAnchor(w3, await deploy_contract(w3, accounts[0]), accounts[1])
    await chain.grant_anchorer(accounts[1], accounts[0])
    before = await w3.eth.get_transaction_count(accounts[1])
    events = 10_000
    for start in range(0, events, 100):  # 100 events per append, a seal every 1,000 events
        await ledger.append(sign_batch(WRITER, bodies(100), writer))
        if (start + 100) % 1000 == 0:
            await ledger.seal()
    began = time.perf_counter()
    while True:
        progress = await anchor_pending_once(ledger, chain)
        if progress.sent == 0 and progress.waiting == 0:
            break
    anchoring = time.perf_counter() - began
    transactions = await w3.eth.get_transaction_count(accounts[1]) - before
    blocks = len(await ledger.blocks())
    print(
        f"\nchain (in-process EVM): {events:,} events -> {blocks} sealed blocks -> {transactions} "
        "transactions "
        f"({'=' if transactions == blocks else '!='} blocks), anchored in {anchoring:.2f} s "
        f"({blocks / anchoring:.1f} blocks/s)"
    )


async def bench_seal_latency(engine: Engine, interval: float, samples: int) -> None:
    ledger, writer = await new_ledger(engine)
    stop = asyncio.Event()
    sealer = asyncio.create_task(ledger.run_sealer(interval, stop))
    latencies = []
    for i in range(samples):
        await asyncio.sleep(interval * (0.37 * i % 1))  # spread the appends over the interval
        start = time.perf_counter()
        receipt = (await ledger.append(sign_batch(WRITER, bodies(50), writer)))[-1]
        while (block := await ledger.latest_block()) is None or block.tree_size <= receipt.seq:
            await asyncio.sleep(0.005)
        latencies.append(time.perf_counter() - start)
    stop.set()
    await sealer
    print(
        f"\nseal latency, sealer every {interval:.1f} s: append -> sealed median "
        f"{1000 * statistics.median(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms "
        f"(ratio to the interval {statistics.median(latencies) / interval:.2f})"
    )


async def postgres_database(url: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name


async def drop_postgres_database(url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "ECARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()

    baseline = crypto_baseline()
    print("raw signatures on one core (the baseline)")
    for name, value in baseline.items():
        print(f"  {name:<15} {value:>9,.0f}/s")
    ed_verify, ed_sign = baseline["Ed25519 verify"], baseline["Ed25519 sign"]

    with tempfile.TemporaryDirectory() as folder:
        sqlite = SQLiteEngine(path=str(Path(folder) / "ledger.db"), timeout=30)
        await sqlite.run_ddl("PRAGMA journal_mode=WAL")
        ledger = await bench_appends("SQLite file (WAL)", sqlite, args.entries, ed_verify, ed_sign)
        await bench_proofs(ledger, ed_verify)

        database = await postgres_database(args.postgres)
        if database is None:
            print(f"\nPostgreSQL at {args.postgres} is not reachable: skipped")
        else:
            parsed = urlparse(args.postgres)
            pg = PostgresEngine(
                config={
                    "host": parsed.hostname,
                    "port": parsed.port or 5432,
                    "user": parsed.username or "postgres",
                    "password": parsed.password,
                    "database": database,
                }
            )
            await pg.start_connection_pool(min_size=1, max_size=2)
            try:
                await bench_appends("PostgreSQL", pg, args.entries, ed_verify, ed_sign)
            finally:
                await pg.close_connection_pool()
                await drop_postgres_database(args.postgres, database)

        await bench_chain(SQLiteEngine(path=str(Path(folder) / "chain.db"), timeout=30))
        await bench_seal_latency(
            SQLiteEngine(path=str(Path(folder) / "latency.db"), timeout=30), 1.0, 6
        )


if __name__ == "__main__":
    asyncio.run(main())
