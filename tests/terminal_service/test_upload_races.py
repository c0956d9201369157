"""Racing uploads of offline records: two uploads of the same terminal and counter with different
content store exactly one record, report the other as a conflict and write a conflict anomaly,
whatever the interleaving; the same content racing is an idempotent duplicate with no anomaly.

The insert is atomic on the record key (insert ... on conflict do nothing ... returning), and a
record another upload stored first is re-judged against the stored one.  Raced three ways: requests
fired together at one app (both backends), the interleaving forced (both read before either
writes), and two worker processes sharing one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import ClientPrincipal
from ecard.settings import Settings
from ecard.terminal import records as rec
from ecard.terminal.service import TerminalPrincipal, TerminalService
from ecard.terminal.tables import TerminalAnomaly, TerminalRecord
from tests.helpers import World
from tests.terminal_service.conftest import (
    PHARMACY,
    RegisteredTerminal,
    reference_terminal,
    register_terminal,
)

PAIRS = 20
PATH = "/terminal/v1/records"


def rival_records(
    terminal: RegisteredTerminal, counter: int
) -> tuple[rec.SignedRecord, rec.SignedRecord]:
    """Two signed records of one terminal and counter that differ in content."""
    base = rec.AcceptanceRecord(
        terminal_id=terminal.id,
        counter=counter,
        reference=f"first_pseudonym_{counter:04d}",
        accepted_at=1_700_000_000 + counter,
        kind=rec.AcceptanceKind.CARD,
        result=rec.AcceptanceResult.ACCEPTED,
    )
    other = msgspec.structs.replace(base, reference=f"other_pseudonym_{counter:04d}")
    return rec.sign_record(base, terminal.key), rec.sign_record(other, terminal.key)


def body_of(*signed: rec.SignedRecord) -> bytes:
    return msgspec.json.encode({"records": list(signed)})


def assert_one_stored_one_conflict(reports: list[dict], counter: int) -> None:
    stored = [report for report in reports if report["stored"] == 1]
    conflicts = [report for report in reports if report["conflicts"] == [counter]]
    assert len(stored) == 1 and len(conflicts) == 1 and stored[0] is not conflicts[0], (
        counter,
        reports,
    )
    assert conflicts[0]["stored"] == 0 and not stored[0]["conflicts"], reports


async def assert_held(terminal_id: str, pairs: int, reports: list[list[dict]]) -> None:
    """One record per counter, holding the content of the upload that reported it stored, and one
    conflict anomaly per counter naming the other content."""
    rows = (
        await TerminalRecord.select()
        .where(TerminalRecord.terminal == terminal_id)
        .order_by(TerminalRecord.counter)
    )
    assert [row["counter"] for row in rows] == list(range(1, pairs + 1))
    anomalies = (
        await TerminalAnomaly.select()
        .where(TerminalAnomaly.terminal == terminal_id)
        .order_by(TerminalAnomaly.counter)
    )
    assert [(row["anomaly"], row["counter"]) for row in anomalies] == [
        ("conflicts", c) for c in range(1, pairs + 1)
    ]
    for row, anomaly in zip(rows, anomalies, strict=True):
        assert {row["reference"], anomaly["reference"]} == {
            f"first_pseudonym_{row['counter']:04d}",
            f"other_pseudonym_{row['counter']:04d}",
        }


async def test_concurrent_uploads_of_different_content_store_one_and_report_the_other(
    client: httpx.AsyncClient, world: World
) -> None:
    terminal = await register_terminal(world, PHARMACY)
    station = reference_terminal(client, terminal)
    all_reports = []
    for counter in range(1, PAIRS + 1):
        first, other = rival_records(terminal, counter)
        responses = await asyncio.gather(
            station.call("POST", PATH, body_of(first)), station.call("POST", PATH, body_of(other))
        )
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        reports = [r.json() for r in responses]
        assert_one_stored_one_conflict(reports, counter)
        all_reports.append(reports)
    await assert_held(terminal.id, PAIRS, all_reports)
    body = (
        await client.get(f"/operator/v1/terminals/{terminal.id}/reconciliation", headers=world.op())
    ).json()
    assert body["records"] == PAIRS and body["anomalies"] == {"conflicts": PAIRS}


async def test_the_race_is_settled_when_both_uploads_read_before_either_writes(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving that lost records before: both judge the batch against an empty store,
    both insert.  Forced here with a barrier in the read, for different and for the same content."""
    terminal = await register_terminal(world, PHARMACY)
    station = reference_terminal(client, terminal)
    read = TerminalService._stored_around
    waiting: list[asyncio.Event] = []

    async def read_then_wait_for_the_rival(
        self, terminal_id: str, counters: list[int]
    ) -> list[rec.SignedRecord]:
        held = await read(self, terminal_id, counters)
        arrived = asyncio.Event()
        waiting.append(arrived)
        if len(waiting) % 2 == 0:  # the second reader releases both
            for event in waiting[-2:]:
                event.set()
        await asyncio.wait_for(arrived.wait(), timeout=10)
        return held

    monkeypatch.setattr(TerminalService, "_stored_around", read_then_wait_for_the_rival)
    first, other = rival_records(terminal, 1)
    responses = await asyncio.gather(
        station.call("POST", PATH, body_of(first)), station.call("POST", PATH, body_of(other))
    )
    reports = [r.json() for r in responses]
    assert_one_stored_one_conflict(reports, 1)
    first_won = reports[0]["stored"] == 1

    second, _ = rival_records(
        terminal, 2
    )  # the same content racing, signed twice (ES256 is randomised)
    responses = await asyncio.gather(
        station.call("POST", PATH, body_of(second)),
        station.call("POST", PATH, body_of(rec.sign_record(second.record, terminal.key))),
    )
    reports = [r.json() for r in responses]
    assert sorted(r["stored"] for r in reports) == [0, 1] and sorted(
        r["duplicates"] for r in reports
    ) == [[], [2]]
    assert all(not r["conflicts"] for r in reports)
    assert len(waiting) == 4  # both pairs did meet at the barrier

    monkeypatch.setattr(TerminalService, "_stored_around", read)
    retry = (
        await station.call("POST", PATH, body_of(rec.sign_record(first.record, terminal.key)))
    ).json()
    assert (retry["duplicates"], retry["conflicts"]) == (([1], []) if first_won else ([], [1]))
    anomalies = await TerminalAnomaly.select(
        TerminalAnomaly.anomaly, TerminalAnomaly.counter
    ).where(TerminalAnomaly.terminal == terminal.id)
    assert [(a["anomaly"], a["counter"]) for a in anomalies] == [("conflicts", 1)] * (
        1 if first_won else 2
    )


# --- two workers: separate processes, separate connection pools, one PostgreSQL database ------


def _worker(
    settings: Settings, terminal_id: str, jwk: dict, bodies: list[bytes], barrier, results
) -> None:
    asyncio.run(_work(settings, terminal_id, jwk, bodies, barrier, results))


async def _work(
    settings: Settings, terminal_id: str, jwk: dict, bodies: list[bytes], barrier, results
) -> None:
    from ecard.codes.service import CodeService
    from ecard.offline.es256 import public_key_from_jwk
    from ecard.platform import open_platform

    platform = await open_platform(settings, migrate=False)
    try:
        service = TerminalService(platform, CodeService(platform))
        principal = TerminalPrincipal(
            ClientPrincipal(
                id=terminal_id, kind="terminal", name="worker", regions=("330000",), entitlements=()
            ),
            public_key_from_jwk(jwk),
        )
        for index, body in enumerate(bodies):
            await asyncio.to_thread(barrier.wait, 30)
            report = await service.upload(principal, body)
            results.put((index, msgspec.json.encode(report)))
    finally:
        await platform.close()


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
async def test_two_workers_sharing_postgresql_store_one_and_report_the_other(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    from ecard.offline.es256 import public_jwk

    terminal = await register_terminal(world, PHARMACY)
    pairs = [rival_records(terminal, counter) for counter in range(1, PAIRS + 1)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    jwk = public_jwk(terminal.key.public_key())
    workers = [
        context.Process(
            target=_worker,
            args=(
                settings,
                terminal.id,
                jwk,
                [body_of(pair[side]) for pair in pairs],
                barrier,
                results,
            ),
        )
        for side in (0, 1)
    ]
    for worker in workers:
        worker.start()
    reports: dict[int, list[dict]] = {}
    deadline = time.monotonic() + 120
    while sum(len(r) for r in reports.values()) < 2 * PAIRS:
        assert time.monotonic() < deadline and all(
            w.is_alive() or w.exitcode == 0 for w in workers
        ), "a worker failed"
        try:
            index, report = await asyncio.to_thread(results.get, True, 1)
        except queue.Empty:
            continue
        reports.setdefault(index, []).append(msgspec.json.decode(report))
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    for index in range(PAIRS):
        assert_one_stored_one_conflict(reports[index], index + 1)
    await assert_held(terminal.id, PAIRS, [reports[i] for i in range(PAIRS)])


def test_a_lost_race_is_resettled_by_content() -> None:
    """The pure step: accepted records another upload stored first become duplicates (same
    content) or conflicts (different), and leave the flags derived from accepted."""
    key = ec.generate_private_key(ec.SECP256R1())
    terminal = RegisteredTerminal("term-1", key)
    mine = [rival_records(terminal, counter)[0] for counter in (1, 2, 3)]
    result = rec.reconcile(
        [],
        mine,
        terminal_keys={"term-1": key.public_key()},
        revoked_at={mine[2].record.reference: 0},
        code_expires_at={},
    )
    assert result.revoked_before_acceptance == (mine[2],)
    held = {
        rec.record_key(mine[1].record): mine[1].record,  # stored by a retry of this very record
        rec.record_key(mine[2].record): rival_records(terminal, 3)[1].record,  # stored by a rival
    }
    settled = rec.settle_lost_races(result, [rec.record_key(mine[0].record)], held)
    assert (settled.accepted, settled.duplicates, settled.conflicts) == (
        (mine[0],),
        (mine[1],),
        (mine[2],),
    )
    assert settled.revoked_before_acceptance == ()
    assert rec.settle_lost_races(result, [rec.record_key(s.record) for s in mine], {}) is result
    with pytest.raises(ValueError):
        rec.settle_lost_races(result, [], {})
