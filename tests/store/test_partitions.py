"""The append-only logs are partitioned by month on PostgreSQL and keep their retention: the
migration turns an existing table with rows into a partitioned one, ``ecard db maintain`` makes the
coming months' partitions, detaches (then drops) the months past retention, never touches the
ledger, and changes nothing in a dry run.  SQLite keeps plain tables."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.engine.base import Engine

from ecard.cli import main
from ecard.store import db
from ecard.store.partitions import (
    LOG_TABLES,
    PROTECTED_TABLES,
    LogTable,
    Month,
    PartitionPolicyError,
    Policy,
    log_table,
    maintain,
    retention_policy,
)

#: the migrations of this change, one per domain holding a log
PARTITIONING = "2026-12-03T20:00:00:000000"
DEC_2026 = dt.datetime(2026, 12, 15, 12, 0, tzinfo=dt.UTC)
POLICY = Policy(retention=retention_policy())


def utc(year: int, month: int, day: int = 10) -> dt.datetime:
    return dt.datetime(year, month, day, 8, 30, tzinfo=dt.UTC)


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


@pytest.fixture()
async def engine(migrated_postgres_url: str) -> AsyncIterator[Engine[Any]]:
    engine = db.make_engine(migrated_postgres_url)
    try:
        yield engine
    finally:
        await db.close_engine(engine)


@pytest.fixture()
async def sql(migrated_postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(migrated_postgres_url)
    try:
        yield connection
    finally:
        await connection.close()


async def partitions(connection: asyncpg.Connection, table: str) -> set[str]:
    rows = await connection.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass",
        table,
    )
    return {row["relname"] for row in rows}


async def exists(connection: asyncpg.Connection, name: str) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def add_audit(connection: asyncpg.Connection, at: dt.datetime, action: str) -> int:
    return int(
        await connection.fetchval(
            "INSERT INTO audit_event (at, actor_kind, actor_id, action, target_kind, target_id) "
            "VALUES ($1, 'operator', 'op1', $2, 'card', 'c1') RETURNING id",
            at,
            action,
        )
    )


async def add_consent_event(connection: asyncpg.Connection, consent: str, at: dt.datetime) -> None:
    await connection.execute(
        "INSERT INTO api_client (id, kind, name) VALUES ('rp', 'relying_party', 'rp') "
        "ON CONFLICT DO NOTHING"
    )
    await connection.execute(
        "INSERT INTO consent (id, relying_party) VALUES ($1, 'rp') ON CONFLICT DO NOTHING", consent
    )
    await connection.execute(
        "INSERT INTO consent_event (consent, event, time_ms) VALUES ($1, 'grant', $2)",
        consent,
        ms(at),
    )


async def catalogue(connection: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """Every table, its kind, partition bound and comment: what maintenance may change."""
    rows = await connection.fetch(
        "SELECT c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid) AS bound, "
        "obj_description(c.oid, 'pg_class') AS note FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1"
    )
    return [tuple(row) for row in rows]


# --- the migration ----------------------------------------------------------------------------


async def migrate_to_before_partitioning(engine: Engine[Any]) -> None:
    """Every migration except this change's: the logs are the plain tables a deployment has."""
    db.bind_engine(engine)
    manager = BaseMigrationManager()
    for config in db.app_configs():
        ids = sorted(manager.get_migration_modules(config.migrations_folder_path))
        before = [i for i in ids if i < PARTITIONING]
        if before:
            result = await run_forwards(app_name=config.app_name, migration_id=before[-1])
            assert result.success, result.message


async def test_migration_keeps_every_row_and_the_service_queries_still_work(
    fresh_postgres_url: str,
) -> None:
    from ecard.codes.tables import CodeVerification
    from ecard.registry.tables import AuditEvent

    engine = db.make_engine(fresh_postgres_url)
    connection = await asyncpg.connect(fresh_postgres_url)
    try:
        await migrate_to_before_partitioning(engine)
        assert (
            await connection.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = 'audit_event'"
            )
            == "r"
        )
        old = await add_audit(connection, utc(2023, 1), "old")
        recent = await add_audit(connection, utc(2026, 11), "recent")
        future = await add_audit(connection, utc(2031, 5), "far-future")
        await connection.execute(
            "INSERT INTO api_client (id, kind, name) VALUES ('v1', 'verifier', 'v1')"
        )
        await connection.execute(
            "INSERT INTO code_verification (at, verifier, result) VALUES ($1, 'v1', 'valid')",
            utc(2025, 3),
        )

        await db.migrate(engine)

        for table in LOG_TABLES:
            kind = await connection.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = $1", table.name
            )
            assert kind == "p", table.name
        held = await partitions(connection, "audit_event")
        assert {"audit_event_p202301", "audit_event_p202611", "audit_event_default"} <= held
        # rows kept, each in its month; the far future one waits in DEFAULT
        rows = await connection.fetch(
            "SELECT id, action, tableoid::regclass::text AS part FROM audit_event ORDER BY id"
        )
        assert [(r["id"], r["action"], r["part"]) for r in rows] == [
            (old, "old", "audit_event_p202301"),
            (recent, "recent", "audit_event_p202611"),
            (future, "far-future", "audit_event_default"),
        ]
        # the id sequence goes on where it was, and belongs to the new table
        db.bind_engine(engine)
        await AuditEvent.insert(
            AuditEvent(
                actor_kind="operator",
                actor_id="op2",
                action="after",
                target_kind="card",
                target_id="c2",
            )
        ).run()
        after = await AuditEvent.select(AuditEvent.id).where(AuditEvent.action == "after").first()
        assert after is not None and after["id"] > future
        owner = await connection.fetchval("SELECT pg_get_serial_sequence('audit_event', 'id')")
        assert owner == "public.audit_event_id_seq"
        # the primary key now includes the month column; the indexes are back under their names
        key = await connection.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'audit_event_pkey'"
        )
        assert key == "PRIMARY KEY (id, at)"
        indexes = {
            r["indexname"]
            for r in await connection.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'audit_event'"
            )
        }
        assert {"audit_event_at", "audit_event_action", "audit_event_target_id"} <= indexes
        # the foreign keys still hold
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await connection.execute(
                "INSERT INTO code_verification (verifier, result) VALUES ('nobody', 'valid')"
            )
        counted = await CodeVerification.count().where(CodeVerification.verifier == "v1")
        assert counted == 1
        # the ledger's tables stay plain tables
        for name in ("ledger_entry", "ledger_block", "ledger_tile"):
            kind = await connection.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = $1", name
            )
            assert kind == "r", name
        # migrating again changes nothing
        await db.migrate(engine)
        assert await partitions(connection, "audit_event") == held
    finally:
        await connection.close()
        await db.close_engine(engine)


# --- maintenance ------------------------------------------------------------------------------


async def test_maintain_creates_the_coming_months_once(
    engine: Engine[Any], sql: asyncpg.Connection
) -> None:
    june = dt.datetime(2027, 6, 2, tzinfo=dt.UTC)
    steps = await maintain(engine, POLICY, now=june)
    created = {s.partition for s in steps if s.action == "create"}
    for table in LOG_TABLES:
        for month in ("202706", "202707", "202708", "202709"):
            assert f"{table.name}_p{month}" in created
            assert f"{table.name}_p{month}" in await partitions(sql, table.name)
    assert "audit_event_p202710" not in await partitions(sql, "audit_event")
    again = await maintain(engine, POLICY, now=june)
    assert [s for s in again if s.action != "ok"] == []


async def test_an_insert_beyond_the_partitions_lands_in_default_and_moves_in_its_month(
    engine: Engine[Any], sql: asyncpg.Connection
) -> None:
    far = utc(2031, 5)
    row = await add_audit(sql, far, "far-future")
    assert (
        await sql.fetchval("SELECT tableoid::regclass::text FROM audit_event WHERE id = $1", row)
        == "audit_event_default"
    )
    await add_consent_event(sql, "c-far", far)
    steps = await maintain(engine, POLICY, now=utc(2031, 4))
    moved = [s for s in steps if s.action == "create" and "moved" in s.detail]
    assert {s.partition for s in moved} == {"audit_event_p203105", "consent_event_p203105"}
    assert (
        await sql.fetchval("SELECT tableoid::regclass::text FROM audit_event WHERE id = $1", row)
        == "audit_event_p203105"
    )
    assert await sql.fetchval("SELECT count(*) FROM audit_event_default") == 0
    assert await sql.fetchval("SELECT count(*) FROM consent_event WHERE consent = 'c-far'") == 1


async def test_retention_detaches_an_old_month_keeps_a_recent_one_then_drops_after_grace(
    engine: Engine[Any], sql: asyncpg.Connection
) -> None:
    await maintain(engine, POLICY, now=utc(2023, 1))  # the deployment ran back then
    await maintain(engine, POLICY, now=utc(2023, 12))
    old = await add_audit(sql, utc(2023, 1), "old")
    recent = await add_audit(sql, utc(2026, 12), "recent")

    steps = await maintain(engine, POLICY, now=DEC_2026)

    assert "audit_event_p202301" in {s.partition for s in steps if s.action == "detach"}
    held = await partitions(sql, "audit_event")
    assert "audit_event_p202301" not in held and "audit_event_p202612" in held
    # 36 whole months back from December 2026 are kept: December 2023 on
    assert "audit_event_p202312" in held and "audit_event_p202311" not in held
    assert [r["id"] for r in await sql.fetch("SELECT id FROM audit_event")] == [recent]
    # detached, not gone: it can be archived during the grace period
    assert await sql.fetchval("SELECT id FROM audit_event_p202301") == old
    note = await sql.fetchval("SELECT obj_description('audit_event_p202301'::regclass)")
    assert note.startswith("ecard-detached 2026-12-15T12:00:00+00:00 from audit_event")

    within_grace = await maintain(engine, POLICY, now=DEC_2026 + dt.timedelta(days=29))
    assert not [s for s in within_grace if s.action == "drop"]
    assert await exists(sql, "audit_event_p202301")

    after_grace = await maintain(engine, POLICY, now=DEC_2026 + dt.timedelta(days=30))
    assert "audit_event_p202301" in {s.partition for s in after_grace if s.action == "drop"}
    assert not await exists(sql, "audit_event_p202301")
    assert await sql.fetchval("SELECT id FROM audit_event") == recent


async def test_dropping_now_needs_the_flag_and_a_zero_grace_never_drops_by_itself(
    engine: Engine[Any], sql: asyncpg.Connection
) -> None:
    await maintain(engine, POLICY, now=utc(2022, 6))
    await add_audit(sql, utc(2022, 6), "old")
    keep = Policy(retention=retention_policy(), drop_after_days=0)
    later = DEC_2026 + dt.timedelta(days=400)
    await maintain(engine, keep, now=DEC_2026)
    await maintain(engine, keep, now=later)
    assert await exists(sql, "audit_event_p202206")
    flagged = Policy(retention=retention_policy(), drop_after_days=0, drop_detached=True)
    await maintain(engine, flagged, now=later)
    assert not await exists(sql, "audit_event_p202206")


async def test_a_consent_event_not_yet_on_the_ledger_holds_its_month(
    engine: Engine[Any], sql: asyncpg.Connection
) -> None:
    await maintain(engine, POLICY, now=utc(2022, 3))
    await add_consent_event(sql, "c-old", utc(2022, 3))
    steps = await maintain(engine, POLICY, now=DEC_2026)
    assert "consent_event_p202203" in {s.partition for s in steps if s.action == "hold"}
    assert "consent_event_p202203" in await partitions(sql, "consent_event")
    await sql.execute("UPDATE consent_event SET seq = 1 WHERE consent = 'c-old'")  # relayed
    steps = await maintain(engine, POLICY, now=DEC_2026)
    assert "consent_event_p202203" in {s.partition for s in steps if s.action == "detach"}


async def test_a_dry_run_changes_nothing(engine: Engine[Any], sql: asyncpg.Connection) -> None:
    await maintain(engine, POLICY, now=utc(2022, 1))
    await add_audit(sql, utc(2022, 1), "old")
    await add_audit(sql, utc(2031, 5), "far-future")
    before = await catalogue(sql)
    steps = await maintain(engine, POLICY, now=utc(2027, 5), dry_run=True)
    actions = {s.action for s in steps}
    assert {"create", "detach"} <= actions
    assert await catalogue(sql) == before
    assert await sql.fetchval("SELECT count(*) FROM audit_event") == 2


async def test_two_workers_maintaining_at_once_both_succeed(
    migrated_postgres_url: str, sql: asyncpg.Connection
) -> None:
    engines = [db.make_engine(migrated_postgres_url) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(maintain(e, POLICY, now=dt.datetime(2028, 2, 1, tzinfo=dt.UTC)) for e in engines)
        )
    finally:
        for e in engines:
            await db.close_engine(e)
    created = [s.partition for steps in results for s in steps if s.action == "create"]
    assert len(created) == len(set(created))  # each partition made by one of them
    assert "audit_event_p202805" in await partitions(sql, "audit_event")


# --- the ledger -------------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(PROTECTED_TABLES))
def test_the_ledger_tables_are_refused_everywhere(table: str) -> None:
    with pytest.raises(PartitionPolicyError, match="never"):
        LogTable(table, "time_ms", "epoch_ms", retention_months=36)
    with pytest.raises(PartitionPolicyError, match="never"):
        retention_policy({table: 120})
    with pytest.raises(PartitionPolicyError, match="never"):
        log_table(table)
    assert all(not t.name.startswith("ledger") for t in LOG_TABLES)


async def test_maintenance_never_drops_a_ledger_table_that_looks_detached(
    engine: Engine[Any], sql: asyncpg.Connection
) -> None:
    await sql.execute("CREATE TABLE ledger_entry_p202001 (LIKE ledger_entry)")
    await sql.execute(
        "COMMENT ON TABLE ledger_entry_p202001 IS "
        "'ecard-detached 2020-02-01T00:00:00+00:00 from ledger_entry'"
    )
    flagged = Policy(retention=retention_policy(), drop_detached=True)
    await maintain(engine, flagged, now=DEC_2026)
    assert await exists(sql, "ledger_entry_p202001")
    assert (
        await sql.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'ledger_entry'")
        == "r"
    )


# --- settings, SQLite, the command --------------------------------------------------------------


def test_retention_settings_are_checked() -> None:
    from ecard.settings import SettingsError, load_settings

    assert load_settings({"ECARD_RETENTION_MONTHS": '{"audit_event": 60}'}).retention_months == {
        "audit_event": 60
    }
    for value, message in (
        ('{"audit_event": 5}', "legal floor"),
        ('{"terminal_record": 12}', "not a partitioned log"),
        ('{"ledger_entry": 12}', "never"),
    ):
        with pytest.raises(SettingsError, match=message):
            load_settings({"ECARD_RETENTION_MONTHS": value})


async def test_on_sqlite_there_is_nothing_to_maintain(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/ecard.db")
    try:
        await db.migrate(engine)
        assert await maintain(engine, POLICY) == []
    finally:
        await db.close_engine(engine)


def test_the_command_on_sqlite_says_it_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ECARD_DATABASE_URL", f"sqlite:///{tmp_path}/ecard.db")
    assert main(["db", "maintain"]) == 0
    assert "SQLite keeps plain tables: nothing to maintain" in capsys.readouterr().out


def test_the_command_dry_run_on_postgresql_reports_and_changes_nothing(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import admin_sql

    name = f"x{uuid.uuid4().hex[:8]}"
    # a partition the coming months need, taken away
    current = Month.of(dt.datetime.now(dt.UTC)).plus(2)
    partition = f"audit_event_p{current.year:04d}{current.month:02d}"
    admin_sql(migrated_postgres_url, f"ALTER TABLE audit_event DETACH PARTITION {partition}")
    admin_sql(migrated_postgres_url, f"ALTER TABLE {partition} RENAME TO {name}")
    monkeypatch.setenv("ECARD_DATABASE_URL", migrated_postgres_url)
    assert main(["db", "maintain", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would create  {partition}" in out and "planned (dry run: nothing changed)" in out
    assert main(["db", "maintain"]) == 0
    out = capsys.readouterr().out
    assert f"create  {partition}" in out and "would" not in out
    assert main(["db", "maintain", "--dry-run"]) == 0
    assert "0 change(s) planned" in capsys.readouterr().out


@given(st.integers(1900, 2400), st.integers(1, 12), st.integers(-2400, 2400))
def test_months_add_up(year: int, month: int, n: int) -> None:
    start = Month(year, month)
    assert start.plus(n).plus(-n) == start
    assert 1 <= start.plus(n).month <= 12
    assert (start.plus(n) > start) == (n > 0)
    table = log_table("consent_event")
    # consecutive months' bounds are ordered: ranges never overlap
    assert int(table.bound(start)) < int(table.bound(start.plus(1)))


async def test_the_service_maintains_the_partitions_itself(
    migrated_postgres_url: str, keys_dir: str, sql: asyncpg.Connection
) -> None:
    """The ``partitions`` domain's background task runs maintenance as the service starts (and
    daily after): a coming month's partition that went missing is back."""
    from ecard.platform import open_platform
    from ecard.settings import load_settings
    from ecard.store.partitions import background

    coming = Month.of(dt.datetime.now(dt.UTC)).plus(3)
    partition = f"audit_event_p{coming.year:04d}{coming.month:02d}"
    await sql.execute(f"DROP TABLE {partition}")
    settings = load_settings(
        {"ECARD_DATABASE_URL": migrated_postgres_url, "ECARD_KEYS_DIR": keys_dir}
    )
    platform = await open_platform(settings)
    try:
        async with background(platform):
            for _ in range(200):
                if partition in await partitions(sql, "audit_event"):
                    break
                await asyncio.sleep(0.05)
        assert partition in await partitions(sql, "audit_event")
    finally:
        await platform.close()
    off = load_settings(
        {
            "ECARD_DATABASE_URL": migrated_postgres_url,
            "ECARD_KEYS_DIR": keys_dir,
            "ECARD_PARTITION_MAINTENANCE": "false",
        }
    )
    await sql.execute(f"DROP TABLE {partition}")
    platform = await open_platform(off)
    try:
        async with background(platform):
            await asyncio.sleep(0.5)
        assert partition not in await partitions(sql, "audit_event")
    finally:
        await platform.close()


def test_the_command_says_so_when_the_database_is_away(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ECARD_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/ecard")
    assert main(["db", "maintain"]) == 1
    assert "database unavailable, nothing changed" in capsys.readouterr().err
