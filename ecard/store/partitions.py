"""Monthly partitions and retention of the append-only logs, on PostgreSQL.

The logs that grow with use (verifications, audit events, consent events and accesses, terminal
anomalies: :data:`LOG_TABLES`) are ``PARTITION BY RANGE`` on their time column, one partition a
month (``<table>_pYYYYMM``, months in UTC) plus a ``<table>_default`` partition, so an insert never
fails for want of a partition.  ``ecard db maintain`` (:func:`maintain`; also run daily by the
``partitions`` background task) keeps them so:

1. it creates the partitions of the current month and ``months_ahead`` months after it, and of any
   month whose rows are in the DEFAULT partition (rows from the future land there; when their
   month's partition is made they move into it);
2. it detaches the partitions whose whole month is older than the table's retention (the table
   stays queryable as ``<table>_pYYYYMM`` and is marked with a comment saying when), unless a
   row in it must be kept (``hold_while``: a consent event not yet on the ledger);
3. it drops the detached partitions whose grace period (``partition_drop_after_days``, default 30
   days, time to archive them) has passed, or all of them with ``--drop-detached``.

Everything happens in one transaction under a transaction-level advisory lock (safe through
PgBouncer's transaction pooling, and on two workers at once: the second waits, then finds nothing
to do), with a lock timeout so a busy table makes the run fail and retry rather than queue every
query behind it.  ``dry_run`` reports the same steps and changes nothing.

The ledger's tables are never partitioned, detached or dropped (:data:`PROTECTED_TABLES`): a
:class:`LogTable` naming one cannot be made, a retention setting naming one is refused, and the
statements that detach or drop check the name again.  SQLite keeps plain tables: there is nothing
to maintain.  Retention defaults and their legal reasons: ``docs/retention.md``.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime as dt
import logging
import random
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

if TYPE_CHECKING:
    from ecard.platform import Platform

log = logging.getLogger("ecard.store.partitions")

#: the ledger's tables: the consent log is append-only for ever (its proofs cover every entry)
PROTECTED_TABLES = frozenset(
    {
        "ledger_entry",
        "ledger_block",
        "ledger_tile",
        "ledger_head",
        "ledger_commitment",
        "ledger_writer",
        "ledger_anchor",
    }
)

#: transaction-level advisory lock id ("ecpm"): one maintenance run at a time, in any process
MAINTAIN_LOCK = 0x6563706D
#: how long a maintenance statement waits for a table lock before the run fails (and is retried)
LOCK_TIMEOUT = "10s"
#: the comment a detached partition carries: when, from where
_DETACHED = re.compile(r"^ecard-detached (\S+) from (\w+)")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")
#: the longest retention accepted (100 years): beyond it, keep the table unpartitioned
MAX_RETENTION_MONTHS = 1200
#: the shortest retention of any log: 网络安全法 第二十一条(三), network logs kept >= 6 months
LEGAL_FLOOR_MONTHS = 6


class PartitionPolicyError(ValueError):
    """A retention or partitioning request that the rules refuse (a ledger table, an unknown
    table, a retention below the legal floor)."""


def _refuse_protected(table: str) -> None:
    if table in PROTECTED_TABLES or table.startswith("ledger_"):
        raise PartitionPolicyError(
            f"{table}: the ledger's tables are never partitioned, detached or dropped"
        )


@dataclass(frozen=True)
class LogTable:
    """An append-only log partitioned by month on ``column`` (``timestamptz``, or ``epoch_ms``: a
    BIGINT of milliseconds since the epoch)."""

    name: str
    column: str
    unit: Literal["timestamptz", "epoch_ms"]
    #: months a row is kept at least (its whole month must be older before it is detached)
    retention_months: int
    #: the shortest retention a setting may choose
    floor_months: int = LEGAL_FLOOR_MONTHS
    #: a partition holding a row that matches this SQL condition is not detached (yet)
    hold_while: str | None = None

    def __post_init__(self) -> None:
        _refuse_protected(self.name)
        for name in (self.name, self.column):
            if not _IDENT.match(name):
                raise PartitionPolicyError(f"{name!r} is not a plain identifier")
        if not self.floor_months <= self.retention_months <= MAX_RETENTION_MONTHS:
            raise PartitionPolicyError(f"{self.name}: retention below its floor or too long")

    @property
    def default_partition(self) -> str:
        return f"{self.name}_default"

    def partition(self, month: Month) -> str:
        return f"{self.name}_p{month.year:04d}{month.month:02d}"

    def month_of(self, partition: str) -> Month | None:
        """The month of one of this table's monthly partitions, by its name (None otherwise)."""
        match = re.fullmatch(rf"{self.name}_p(\d{{4}})(\d{{2}})", partition)
        if match is None or not 1 <= int(match.group(2)) <= 12:
            return None
        return Month(int(match.group(1)), int(match.group(2)))

    def bound(self, month: Month) -> str:
        """The SQL literal of the first instant of ``month`` in this table's unit."""
        if self.unit == "epoch_ms":
            return str(calendar.timegm((month.year, month.month, 1, 0, 0, 0)) * 1000)
        return f"'{month.year:04d}-{month.month:02d}-01 00:00:00+00'::timestamptz"

    def month_sql(self) -> str:
        """SQL giving a row's month as ``YYYYMM`` text (UTC)."""
        instant = (
            f"to_timestamp({self.column} / 1000.0)" if self.unit == "epoch_ms" else self.column
        )
        return f"to_char(date_trunc('month', {instant}, 'UTC') AT TIME ZONE 'UTC', 'YYYYMM')"


#: the append-only logs, with their default retention (``docs/retention.md`` gives the reasons)
LOG_TABLES: tuple[LogTable, ...] = (
    # who operated on which record, and every operator read of personal data (PIPL 第五十六条:
    # records of processing kept >= 3 years)
    LogTable("audit_event", "at", "timestamptz", retention_months=36),
    # each online verification: which verifier saw which card's data, when
    LogTable("code_verification", "at", "timestamptz", retention_months=36),
    # each read of data under a consent (the holder's "who read my data")
    LogTable("consent_access", "at_ms", "epoch_ms", retention_months=36),
    # the ledger outbox: a row not yet on the ledger is never let go
    LogTable("consent_event", "time_ms", "epoch_ms", retention_months=36, hold_while="seq IS NULL"),
    # terminals' anomalous uploads: evidence of security events
    LogTable("terminal_anomaly", "found_at", "timestamptz", retention_months=36),
)


def log_table(name: str) -> LogTable:
    _refuse_protected(name)
    for table in LOG_TABLES:
        if table.name == name:
            return table
    raise PartitionPolicyError(
        f"{name}: not a partitioned log (known: {', '.join(t.name for t in LOG_TABLES)})"
    )


def retention_policy(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Months kept per log table: the defaults, with ``overrides`` (``ECARD_RETENTION_MONTHS``)
    checked: a known, unprotected table, at least its legal floor, at most 100 years."""
    policy = {table.name: table.retention_months for table in LOG_TABLES}
    for name, months in (overrides or {}).items():
        table = log_table(name)
        if not table.floor_months <= months <= MAX_RETENTION_MONTHS:
            raise PartitionPolicyError(
                f"{name}: retention {months} months; it must be between {table.floor_months} "
                f"(legal floor, docs/retention.md) and {MAX_RETENTION_MONTHS}"
            )
        policy[name] = months
    return policy


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, when: dt.datetime) -> Month:
        when = when.astimezone(dt.UTC)
        return cls(when.year, when.month)

    @classmethod
    def parse(cls, yyyymm: str) -> Month:
        return cls(int(yyyymm[:4]), int(yyyymm[4:6]))

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Step:
    """One thing maintenance did (or, in a dry run, would do)."""

    action: Literal["create", "detach", "drop", "hold", "skip", "ok"]
    table: str
    partition: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action:<7} {self.partition}" + (f"  ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Policy:
    retention: Mapping[str, int]
    months_ahead: int = 3
    #: days a detached partition is kept before it is dropped; 0: only ``drop_detached``
    drop_after_days: int = 30
    drop_detached: bool = False


def is_postgres(engine: Engine[Any]) -> bool:
    return isinstance(engine, PostgresEngine)


async def maintain(
    engine: Engine[Any],
    policy: Policy,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    tables: Sequence[LogTable] = LOG_TABLES,
) -> list[Step]:
    """Create, detach and drop partitions per ``policy``; returns the steps (none on SQLite)."""
    if not is_postgres(engine):
        return []
    now = now or dt.datetime.now(dt.UTC)
    for table in tables:
        _refuse_protected(table.name)
    steps: list[Step] = []
    async with engine.transaction() as transaction:
        connection = transaction.connection
        # another run first finishes (its changes are then seen here); then no table lock is
        # waited for long
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MAINTAIN_LOCK)
        await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for table in tables:
            steps += await _maintain_table(connection, table, policy, now, dry_run)
    return steps


async def _relkind(connection: Any, name: str) -> str | None:
    return await connection.fetchval(  # type: ignore[no-any-return]
        "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)", name
    )


async def _partitions(connection: Any, table: str) -> list[str]:
    rows = await connection.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1)",
        table,
    )
    return [row["relname"] for row in rows]


async def _maintain_table(
    connection: Any, table: LogTable, policy: Policy, now: dt.datetime, dry_run: bool
) -> list[Step]:
    kind = await _relkind(connection, table.name)
    if kind != "p":
        detail = "no such table" if kind is None else "not partitioned: run `ecard db migrate`"
        return [Step("skip", table.name, table.name, detail)]
    retention = policy.retention.get(table.name, table.retention_months)
    current = Month.of(now)
    attached = await _partitions(connection, table.name)
    months = {m for m in map(table.month_of, attached) if m is not None}
    steps: list[Step] = []
    if table.default_partition not in attached:
        steps.append(Step("create", table.name, table.default_partition, "DEFAULT"))
        if not dry_run:
            await connection.execute(
                f"CREATE TABLE {table.default_partition} PARTITION OF {table.name} DEFAULT"
            )
    in_default: set[Month] = set()
    if table.default_partition in attached:
        rows = await connection.fetch(
            f"SELECT DISTINCT {table.month_sql()} AS month FROM {table.default_partition}"  # noqa: S608
        )
        in_default = {Month.parse(row["month"]) for row in rows}
    horizon = current.plus(policy.months_ahead)
    wanted = {current.plus(n) for n in range(policy.months_ahead + 1)}
    wanted |= {m for m in in_default if m <= horizon}
    for month in sorted(wanted - months):
        if await _relkind(connection, table.partition(month)) is not None:
            # a detached month wanted again (the clock went back, or retention grew): left as
            # it is for an operator to look at; its rows meanwhile go to DEFAULT
            steps.append(Step("skip", table.name, table.partition(month), "exists, detached"))
            continue
        moved = month in in_default
        steps.append(
            Step(
                "create",
                table.name,
                table.partition(month),
                f"{month}" + (", rows moved from DEFAULT" if moved else ""),
            )
        )
        if not dry_run:
            await _create_partition(connection, table, month, move_from_default=moved)
        months.add(month)
    # retention: a partition goes once its whole month is older than ``retention`` months
    oldest_kept = current.plus(-retention)
    for month in sorted(m for m in months if m < oldest_kept):
        partition = table.partition(month)
        if table.hold_while is not None and await connection.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {partition} WHERE {table.hold_while})"  # noqa: S608
        ):
            steps.append(Step("hold", table.name, partition, f"has rows where {table.hold_while}"))
            continue
        steps.append(
            Step("detach", table.name, partition, f"{month}, retention {retention} months")
        )
        if not dry_run:
            await _detach(connection, table, partition, now)
    steps += await _drop_detached(connection, table, policy, now, dry_run)
    kept = sorted(m for m in months if m >= oldest_kept)
    span = f"{kept[0]} to {kept[-1]}" if kept else "none"
    steps.append(Step("ok", table.name, table.name, f"months {span}, retention {retention} months"))
    return steps


async def _create_partition(
    connection: Any, table: LogTable, month: Month, *, move_from_default: bool
) -> None:
    """Create the month's partition beside the table and attach it (ATTACH takes a lock that lets
    reads and inserts go on, unlike CREATE ... PARTITION OF); rows of that month waiting in the
    DEFAULT partition move into it first (ATTACH refuses while DEFAULT holds any)."""
    name = table.partition(month)
    low, high = table.bound(month), table.bound(month.plus(1))
    within = f"{table.column} >= {low} AND {table.column} < {high}"
    await connection.execute(
        f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE)"
    )
    if move_from_default:
        await connection.execute(
            f"INSERT INTO {name} SELECT * FROM {table.default_partition} WHERE {within}"  # noqa: S608
        )
        await connection.execute(f"DELETE FROM {table.default_partition} WHERE {within}")  # noqa: S608
    # the constraint proves the bound, so ATTACH need not scan the new partition
    await connection.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bound CHECK ({within})")
    await connection.execute(
        f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})"
    )
    await connection.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bound")


async def _detach(connection: Any, table: LogTable, partition: str, now: dt.datetime) -> None:
    _refuse_protected(table.name)
    if table.month_of(partition) is None:
        raise PartitionPolicyError(f"{partition}: not a monthly partition of {table.name}")
    await connection.execute(f"ALTER TABLE {table.name} DETACH PARTITION {partition}")
    stamp = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    await connection.execute(
        f"COMMENT ON TABLE {partition} IS 'ecard-detached {stamp} from {table.name}'"
    )


async def _drop_detached(
    connection: Any, table: LogTable, policy: Policy, now: dt.datetime, dry_run: bool
) -> list[Step]:
    rows = await connection.fetch(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') AS note FROM pg_class c "
        "WHERE c.relkind = 'r' AND NOT c.relispartition "
        "AND c.relnamespace = current_schema()::regnamespace "
        "AND starts_with(c.relname::text, $1)",
        f"{table.name}_p",
    )
    steps: list[Step] = []
    for row in sorted(rows, key=lambda r: r["relname"]):
        name, note = row["relname"], row["note"] or ""
        marked = _DETACHED.match(note)
        if table.month_of(name) is None or marked is None or marked.group(2) != table.name:
            continue  # not one this maintenance detached: never touched
        detached_at = dt.datetime.fromisoformat(marked.group(1))
        age = now - detached_at
        due = policy.drop_detached or (
            policy.drop_after_days > 0 and age >= dt.timedelta(days=policy.drop_after_days)
        )
        if not due:
            continue
        steps.append(Step("drop", table.name, name, f"detached {marked.group(1)}"))
        if not dry_run:
            _refuse_protected(table.name)
            await connection.execute(f"DROP TABLE {name}")
    return steps


# --- the migrations: turn an existing table into a partitioned one ---------------------------


async def partition_existing_table(
    engine: Engine[Any], name: str, *, months_ahead: int = 3, now: dt.datetime | None = None
) -> bool:
    """Make the plain table ``name`` a partitioned one with the same columns, rows, indexes,
    foreign keys and id sequence, in the caller's transaction (a migration's): a new table is
    created, the rows moved, the names swapped.  Its primary key becomes (key, time column), as
    PostgreSQL requires; a foreign key referring to the table, or a unique constraint without the
    time column, would stop keeping its promise, so either makes it refuse.  False (nothing done)
    on SQLite or when the table is partitioned already."""
    table = log_table(name)
    if not is_postgres(engine):
        return False
    now = now or dt.datetime.now(dt.UTC)
    async with engine.transaction() as transaction:
        connection = transaction.connection
        kind = await _relkind(connection, name)
        if kind == "p":
            return False
        if kind != "r":
            raise PartitionPolicyError(f"{name}: no such table")
        await _partition(connection, table, months_ahead, now)
    return True


async def _partition(connection: Any, table: LogTable, months_ahead: int, now: dt.datetime) -> None:
    name, old = table.name, f"{table.name}__unpartitioned"
    oid = await connection.fetchval("SELECT to_regclass($1)::oid", name)
    referenced = await connection.fetch(
        "SELECT conname, conrelid::regclass::text AS source FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = $1",
        oid,
    )
    if referenced:
        raise PartitionPolicyError(
            f"{name}: referred to by {', '.join(r['source'] for r in referenced)}; "
            "its primary key cannot change"
        )
    constraints = await connection.fetch(
        "SELECT conname, contype::text AS type, pg_get_constraintdef(oid) AS definition, "
        "ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid "
        "AND a.attnum = ANY(c.conkey)) AS columns FROM pg_constraint c WHERE conrelid = $1 "
        "AND contype IN ('p', 'u', 'f')",
        oid,
    )
    primary = [c for c in constraints if c["type"] == "p"]
    for unique in (c for c in constraints if c["type"] == "u"):
        if table.column not in unique["columns"]:
            raise PartitionPolicyError(
                f"{name}: unique constraint {unique['conname']} lacks {table.column}"
            )
    indexes = await connection.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition,"
        " i.indisunique AS is_unique FROM pg_index i WHERE i.indrelid = $1 AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        oid,
    )
    for index in indexes:
        if index["is_unique"] and table.column not in index["definition"]:
            raise PartitionPolicyError(f"{name}: unique index {index['name']} lacks {table.column}")
    sequences = await connection.fetch(
        "SELECT s.relname AS sequence, a.attname AS column FROM pg_depend d "
        "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE d.refobjid = $1 AND d.deptype = 'a'",
        oid,
    )
    rows = await connection.fetch(f"SELECT DISTINCT {table.month_sql()} AS month FROM {name}")  # noqa: S608

    await connection.execute(f"ALTER TABLE {name} RENAME TO {old}")
    await connection.execute(
        f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f"INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({table.column})"
    )
    await connection.execute(f"CREATE TABLE {table.default_partition} PARTITION OF {name} DEFAULT")
    current = Month.of(now)
    horizon = current.plus(months_ahead)
    months = {current.plus(n) for n in range(months_ahead + 1)}
    months |= {m for m in (Month.parse(r["month"]) for r in rows) if m <= horizon}
    for month in sorted(months):
        await connection.execute(
            f"CREATE TABLE {table.partition(month)} PARTITION OF {name} FOR VALUES FROM "
            f"({table.bound(month)}) TO ({table.bound(month.plus(1))})"
        )
    await connection.execute(f"INSERT INTO {name} SELECT * FROM {old}")  # noqa: S608
    for row in sequences:
        await connection.execute(
            f"ALTER SEQUENCE {row['sequence']} OWNED BY {name}.{row['column']}"
        )
    await connection.execute(f"DROP TABLE {old}")  # its indexes go with it, freeing their names
    for key in primary:
        columns = [*key["columns"], *([] if table.column in key["columns"] else [table.column])]
        await connection.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {key['conname']} PRIMARY KEY ({', '.join(columns)})"
        )
    for constraint in constraints:
        if constraint["type"] in ("u", "f"):
            await connection.execute(
                f"ALTER TABLE {name} ADD CONSTRAINT {constraint['conname']} "
                f"{constraint['definition']}"
            )
    for index in indexes:  # their definitions name the table by its name, now the new table's
        await connection.execute(index["definition"])


# --- the daily run ---------------------------------------------------------------------------


#: seconds between two runs of the background task (and the jitter added, so workers spread)
INTERVAL = 24 * 3600.0
JITTER = 600.0


def policy_of(settings: Any) -> Policy:
    return Policy(
        retention=retention_policy(settings.retention_months),
        months_ahead=settings.partition_months_ahead,
        drop_after_days=settings.partition_drop_after_days,
    )


@contextlib.asynccontextmanager
async def background(platform: Platform) -> AsyncIterator[None]:
    """Run :func:`maintain` at start and about daily after, on PostgreSQL when
    ``ECARD_PARTITION_MAINTENANCE`` is on (the default); a failed run is logged and retried at the
    next turn (the DEFAULT partition takes every insert meanwhile)."""
    settings = platform.settings
    if not settings.partition_maintenance or not is_postgres(platform.engine):
        yield
        return
    policy = policy_of(settings)

    async def loop() -> None:
        while True:
            try:
                steps = await maintain(platform.engine, policy)
                for step in steps:
                    level = logging.DEBUG if step.action == "ok" else logging.INFO
                    log.log(
                        level, "partitions.%s", step.action, extra={"partition": step.partition}
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # a maintenance failure must not stop the service
                log.exception("partitions.maintain_failed")
            await asyncio.sleep(INTERVAL + random.uniform(0, JITTER))  # noqa: S311

    task = asyncio.create_task(loop(), name="ecard-partition-maintenance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the command ------------------------------------------------------------------------------


def run_command(settings: Any, *, dry_run: bool, drop_detached: bool) -> int:
    """``ecard db maintain``: print each step (``would`` before it in a dry run); 0 on success."""
    from ecard.store import db

    if settings.is_sqlite:
        print("SQLite keeps plain tables: nothing to maintain (partitions are PostgreSQL's)")
        return 0
    policy = policy_of(settings)
    policy = Policy(
        retention=policy.retention,
        months_ahead=policy.months_ahead,
        drop_after_days=policy.drop_after_days,
        drop_detached=drop_detached,
    )

    async def run() -> list[Step]:
        engine = db.make_engine(settings.database_url)
        try:
            return await maintain(engine, policy, dry_run=dry_run)
        finally:
            await db.close_engine(engine)

    try:
        steps = asyncio.run(run())
    except Exception as exc:
        if not db.is_database_unavailable(exc):
            raise
        print(f"database unavailable, nothing changed: {exc}", file=sys.stderr)
        return 1
    prefix = "would " if dry_run else ""
    for step in steps:
        print(f"{prefix}{step}")
    changed = [s for s in steps if s.action in ("create", "detach", "drop")]
    print(f"{len(changed)} change(s){' planned (dry run: nothing changed)' if dry_run else ''}")
    return 0
