"""Bulk import of persons with their cards from CSV (``ecard registry import FILE.csv``).

Built for a province's registry extract (millions of rows) and kept correct for a small file:

- The file is streamed: read, checked and written a batch at a time, so memory stays constant
  whatever the file's size.  Checking a batch (encrypting its identity numbers, computing their
  blind indexes) overlaps with writing the one before it, in a thread or in ``workers`` processes.
- Every row is checked: its shape, each field (:class:`ImportRow`), the identity number's birth
  date and check digit (GB 11643), the region, the card's dates; duplicates inside a batch are
  refused naming the earlier line; a row that meets the registry (an earlier batch, an earlier
  run, another writer) is told apart by the database's own unique keys, per row.
- Each row is one person plus its card plus the card's first status event, written together in
  the batch's transaction: never a person without its card.  On PostgreSQL a batch is copied
  into a temporary table (``COPY``) and moved by one statement that inserts only the rows whose
  identity number, card number and card identification code are all new; on SQLite a batch is
  checked and inserted inside one immediate (write-locked) transaction.
- Re-running a file, whole or after an interruption, is safe: a row whose person, card number and
  card identification code are already in the registry together is counted as
  ``already_imported``, not refused; a row that clashes with a *different* registry record is
  refused as ``conflicts_with_registry``.  The report says up to which line every row was handled,
  and ``from_line`` skips ahead to it.
- A refused row is reported with its line number and a reason code (and the field or the earlier
  line it concerns) — never with the row's values: the report and any log hold no personal data.
- Each written batch is audited once (``card.import``, the import run's id, the line range and
  counts); each card's history starts with its ``imported`` status event.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import datetime as dt
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import msgspec
from piccolo.engine.postgres import PostgresEngine

from ecard.crypto.fields import FieldCipher, blind_index
from ecard.crypto.identity import InvalidIdentityNumber, birth_date_of, normalize_identity_number
from ecard.platform import Platform
from ecard.registry import schemas
from ecard.registry.audit import audit, new_id
from ecard.registry.service import region_codes
from ecard.registry.tables import Card, CardStatusEvent, Person
from ecard.store.db import is_unique_violation
from ecard.terminal.card_model import chip_reference

COLUMNS = (
    "name",
    "gender",
    "ethnicity",
    "identity_number",
    "region",
    "card_number",
    "chip_serial",
    "identification_code",
    "issue_date",
    "expiry_date",
)
#: rows per transaction (and per COPY); measured best on PostgreSQL (docs/CAPACITY.md)
BATCH = 2000
SQLITE_BATCH = 500
ACTOR = "system:import"
#: refusals kept in the report itself; all of them go to ``on_reject`` (``--rejects FILE``)
LISTED = 1000
#: how often a batch whose write met a concurrent writer is tried again before giving up
RETRIES = 3

# reason codes (docs: ecard registry import --help)
MISSING_COLUMNS = "missing_columns"
BAD_SHAPE = "bad_shape"
INVALID_FIELD = "invalid_field"
INVALID_IDENTITY_NUMBER = "invalid_identity_number"
INVALID_REGION = "invalid_region"
EXPIRY_NOT_AFTER_ISSUE = "expiry_not_after_issue"
DUPLICATE_IN_FILE = "duplicate_in_file"
CONFLICTS_WITH_REGISTRY = "conflicts_with_registry"
ALREADY_IMPORTED = "already_imported"  # not a refusal: the row is in the registry as it is

STAGE_METHODS = ("copy", "unnest")


class ImportRow(msgspec.Struct, forbid_unknown_fields=True):
    name: schemas.Name
    gender: schemas.Gender
    ethnicity: schemas.Ethnicity
    identity_number: schemas.IdentityNumber
    region: schemas.RegionCode
    card_number: schemas.CardNumber
    chip_serial: schemas.HexId
    identification_code: schemas.HexId
    issue_date: dt.date
    expiry_date: dt.date


class Rejection(NamedTuple):
    """A refused row: its line, a reason code and what it concerns (a field name or an earlier
    line) — never a value from the row."""

    line: int
    code: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code} ({self.detail})" if self.detail else self.code


class RowRefused(ValueError):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code, self.detail = code, detail


class Prepared(NamedTuple):
    """One checked row, ready to write (the staging table's columns, in order)."""

    line: int
    person_id: str
    name: str
    gender: str
    ethnicity: str
    birth_date: dt.date
    region: str
    id_number_enc: bytes
    id_number_index: str
    card_id: str
    card_number: str
    chip_serial: str
    identification_code: str
    chip_reference: str | None
    issue_date: dt.date
    expiry_date: dt.date


class Hit(NamedTuple):
    """What the registry already holds for a row that was not written."""

    line: int
    person: bool  # its identity number
    card_number: bool
    identification_code: bool
    same: bool  # the card found by number is this person's and has this identification code


@dataclass
class ImportReport:
    rows: int = 0  # data rows read
    imported: int = 0
    already_imported: int = 0
    rejected_count: int = 0
    #: the first :data:`LISTED` refusals, in line order
    rejected: list[Rejection] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    #: every row up to this line has been handled (written, found or refused)
    done_through: int = 1
    seconds: float = 0.0
    run_id: str = field(default_factory=new_id)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def refuse(self, rejection: Rejection) -> None:
        self.rejected_count += 1
        self.reasons[rejection.code] += 1
        if len(self.rejected) < LISTED:
            self.rejected.append(rejection)

    def summary(self) -> str:
        return (
            f"imported {self.imported} row(s), rejected {self.rejected_count}, "
            f"already imported {self.already_imported}; {self.rows} row(s) in "
            f"{self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s)"
        )


class ImportFailed(RuntimeError):
    """The file cannot be imported at all (unreadable, not UTF-8, no header)."""


# --- checks (pure) ------------------------------------------------------------------------------

_FIELD = re.compile(r"at `\$\.(\w+)`")


def check_row(raw: dict[str, str]) -> ImportRow:
    """The row as typed values, or :class:`RowRefused` naming the first rule it breaks."""
    try:
        row = msgspec.convert(raw, ImportRow, strict=False)
    except msgspec.ValidationError as exc:  # its message may quote the value: keep the field only
        found = _FIELD.search(str(exc))
        raise RowRefused(INVALID_FIELD, found.group(1) if found else "") from None
    try:
        number = normalize_identity_number(row.identity_number)
    except InvalidIdentityNumber:
        raise RowRefused(INVALID_IDENTITY_NUMBER, "identity_number") from None
    if row.region not in region_codes():
        raise RowRefused(INVALID_REGION, "region")
    if row.expiry_date <= row.issue_date:
        raise RowRefused(EXPIRY_NOT_AFTER_ISSUE, "expiry_date")
    return msgspec.structs.replace(
        row,
        identity_number=number,
        name=row.name.strip(),
        identification_code=row.identification_code.upper(),
    )


def prepare(line: int, row: ImportRow, cipher: FieldCipher, index_key: bytes) -> Prepared:
    person_id = new_id()
    return Prepared(
        line=line,
        person_id=person_id,
        name=row.name,
        gender=row.gender,
        ethnicity=row.ethnicity,
        birth_date=birth_date_of(row.identity_number),
        region=row.region,
        id_number_enc=cipher.encrypt(row.identity_number, f"person:{person_id}"),
        id_number_index=blind_index(index_key, row.identity_number),
        card_id=new_id(),
        card_number=row.card_number,
        chip_serial=row.chip_serial,
        identification_code=row.identification_code,
        chip_reference=chip_reference(row.region, row.identification_code),
        issue_date=row.issue_date,
        expiry_date=row.expiry_date,
    )


#: one record as read: its line and its values in :data:`COLUMNS` order, or why its shape is bad
Record = tuple[int, list[str] | str]


def prepare_batch(
    records: list[Record], cipher: FieldCipher, index_key: bytes
) -> tuple[list[Prepared], list[Rejection]]:
    """Check and prepare one batch: rows to write, and the refused ones (duplicates inside the
    batch name the line they repeat)."""
    ready: list[Prepared] = []
    refused: list[Rejection] = []
    seen: dict[tuple[str, str], int] = {}
    for line, values in records:
        if isinstance(values, str):
            refused.append(Rejection(line, BAD_SHAPE, values))
            continue
        try:
            row = check_row(dict(zip(COLUMNS, (v.strip() for v in values), strict=True)))
        except RowRefused as exc:
            refused.append(Rejection(line, exc.code, exc.detail))
            continue
        keys = (
            ("identity_number", row.identity_number),
            ("card_number", row.card_number),
            ("identification_code", row.identification_code),
        )
        earlier = next((k for k in keys if k in seen), None)
        if earlier:
            refused.append(
                Rejection(
                    line, DUPLICATE_IN_FILE, f"{earlier[0]}, duplicate of line {seen[earlier]}"
                )
            )
            continue
        seen.update(dict.fromkeys(keys, line))
        ready.append(prepare(line, row, cipher, index_key))
    return ready, refused


def judge(hit: Hit) -> Rejection | None:
    """None for a row already imported as it is (a re-run), else the refusal naming what clashes."""
    if hit.person and hit.card_number and hit.identification_code and hit.same:
        return None
    clashes = [
        name
        for name, found in (
            ("identity_number", hit.person),
            ("card_number", hit.card_number),
            ("identification_code", hit.identification_code),
        )
        if found
    ]
    return Rejection(hit.line, CONFLICTS_WITH_REGISTRY, ", ".join(clashes))


# --- worker processes ---------------------------------------------------------------------------

_WORKER_KEYS: tuple[FieldCipher, bytes] | None = None


def _start_worker(field_key: bytes, index_key: bytes) -> None:
    global _WORKER_KEYS
    _WORKER_KEYS = (FieldCipher(field_key), index_key)


def _prepare_in_worker(
    records: list[Record],
) -> tuple[list[Prepared], list[Rejection]]:
    if _WORKER_KEYS is None:
        raise RuntimeError("the worker was started without keys")
    return prepare_batch(records, *_WORKER_KEYS)


# --- reading ------------------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """Counts the bytes read, for the progress bar (a text file cannot tell() while iterated)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw, self.count = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def read_batches(handle: IO[str], size: int, from_line: int = 0) -> Iterator[list[Record]]:
    """Batches of records (:data:`Record`); blank lines and lines before ``from_line`` are
    skipped.  Raises :class:`ImportFailed` without a header naming every column."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise ImportFailed("the file is empty")
    names = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ImportFailed(f"{MISSING_COLUMNS}: {', '.join(missing)}")
    positions = [names.index(c) for c in COLUMNS]
    width = len(names)
    batch: list[Record] = []
    while True:
        record: list[str] | str
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error:
            values, record = [""] * width, "unreadable CSV record"
        else:
            if len(values) <= 1 and not any(values):
                continue  # a blank line
            record = (
                [values[p] for p in positions]
                if len(values) == width
                else f"{len(values)} fields, the header has {width}"
            )
        if reader.line_num < from_line:
            continue  # skipped by request (resuming)
        batch.append((reader.line_num, record))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- writing ------------------------------------------------------------------------------------

_STAGE_COLUMNS = Prepared._fields
_STAGE_TYPES = (
    *("int", "text", "text", "text", "text", "date", "text", "bytea"),
    *("text", "text", "text", "text", "text", "text", "date", "date"),
)

_MOVE = """
WITH s AS ({source}),
probe AS MATERIALIZED (
    SELECT s.*, p.id AS p_id, cn.id AS cn_id, cn.person AS cn_person,
           cn.identification_code AS cn_code, ci.id AS ci_id
    FROM s
    -- LIMIT 1 keeps each lookup a per-row index probe: as a join, the planner may hash the
    -- whole table for every batch (it did, on a temporary table without statistics)
    LEFT JOIN LATERAL (
        SELECT id FROM person WHERE id_number_index = s.id_number_index LIMIT 1
    ) p ON true
    LEFT JOIN LATERAL (
        SELECT id, person, identification_code FROM card WHERE card_number = s.card_number LIMIT 1
    ) cn ON true
    LEFT JOIN LATERAL (
        SELECT id FROM card WHERE identification_code = s.identification_code LIMIT 1
    ) ci ON true
),
fresh AS MATERIALIZED (
    SELECT * FROM probe WHERE p_id IS NULL AND cn_id IS NULL AND ci_id IS NULL
),
persons AS (
    INSERT INTO person (id, name, gender, ethnicity, birth_date, region, id_number_enc,
                        id_number_index, deceased_on, created_at, updated_at)
    SELECT person_id, name, gender, ethnicity, birth_date, region, id_number_enc,
           id_number_index, NULL, now(), now() FROM fresh
),
cards AS (
    INSERT INTO card (id, person, card_number, region, chip_serial, identification_code,
                      chip_reference, issue_date, expiry_date, status, status_version,
                      created_at, updated_at)
    SELECT card_id, person_id, card_number, region, chip_serial, identification_code,
           chip_reference, issue_date, expiry_date, 'active', 1, now(), now() FROM fresh
),
events AS (
    INSERT INTO card_status_event (card, from_status, to_status, actor, reason, at)
    SELECT card_id, NULL, 'active', '{actor}', 'imported', now() FROM fresh
)
SELECT line, p_id IS NOT NULL, cn_id IS NOT NULL, ci_id IS NOT NULL,
       coalesce(cn_person = p_id AND cn_code = identification_code, false)
FROM probe
WHERE p_id IS NOT NULL OR cn_id IS NOT NULL OR ci_id IS NOT NULL
"""
# built from the constant column names and types above, no input
_UNNEST_SOURCE = "SELECT * FROM unnest({}) AS u({})".format(  # noqa: S608
    ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_STAGE_TYPES)), ", ".join(_STAGE_COLUMNS)
)
_MOVE_STAGED = _MOVE.format(source="SELECT * FROM import_stage", actor=ACTOR)
_MOVE_UNNESTED = _MOVE.format(source=_UNNEST_SOURCE, actor=ACTOR)
_STAGE_TABLE = "CREATE TEMPORARY TABLE import_stage ({}) ON COMMIT DROP".format(
    ", ".join(f"{c} {t}" for c, t in zip(_STAGE_COLUMNS, _STAGE_TYPES, strict=True))
)


async def _write_postgres(connection: Any, rows: list[Prepared], stage: str) -> list[Hit]:
    """Write the rows that are new in one statement, in the caller's transaction on the asyncpg
    ``connection``; the hits of those that are not."""
    if stage == "copy":
        await connection.execute(_STAGE_TABLE)
        await connection.copy_records_to_table(
            "import_stage", records=rows, columns=list(_STAGE_COLUMNS)
        )
        found = await connection.fetch(_MOVE_STAGED)
    else:
        found = await connection.fetch(_MOVE_UNNESTED, *[list(c) for c in zip(*rows, strict=True)])
    return [Hit(*record) for record in found]


async def _write_sqlite(rows: list[Prepared]) -> list[Hit]:
    """The same on SQLite: the transaction is immediate (the database is write-locked), so what
    the checks find cannot change before the inserts."""
    people = await Person.select(Person.id, Person.id_number_index).where(
        Person.id_number_index.is_in([r.id_number_index for r in rows])
    )
    person_of = {p["id_number_index"]: p["id"] for p in people}
    cards = await Card.select(Card.person, Card.card_number, Card.identification_code).where(
        Card.card_number.is_in([r.card_number for r in rows])
        | Card.identification_code.is_in([r.identification_code for r in rows])
    )
    by_number = {c["card_number"]: c for c in cards}
    codes = {c["identification_code"] for c in cards}
    hits, fresh = [], []
    for r in rows:
        person = person_of.get(r.id_number_index)
        card = by_number.get(r.card_number)
        if person is None and card is None and r.identification_code not in codes:
            fresh.append(r)
            continue
        same = bool(
            card
            and card["person"] == person
            and card["identification_code"] == r.identification_code
        )
        hits.append(
            Hit(r.line, person is not None, card is not None, r.identification_code in codes, same)
        )
    for start in range(0, len(fresh), 100):  # well under SQLite's bound parameters
        chunk = fresh[start : start + 100]
        await Person.insert(
            *[
                Person(
                    id=r.person_id,
                    name=r.name,
                    gender=r.gender,
                    ethnicity=r.ethnicity,
                    birth_date=r.birth_date,
                    region=r.region,
                    id_number_enc=r.id_number_enc,
                    id_number_index=r.id_number_index,
                )
                for r in chunk
            ]
        ).run()
        await Card.insert(
            *[
                Card(
                    id=r.card_id,
                    person=r.person_id,
                    card_number=r.card_number,
                    region=r.region,
                    chip_serial=r.chip_serial,
                    identification_code=r.identification_code,
                    chip_reference=r.chip_reference,
                    issue_date=r.issue_date,
                    expiry_date=r.expiry_date,
                    status="active",
                )
                for r in chunk
            ]
        ).run()
        await CardStatusEvent.insert(
            *[
                CardStatusEvent(
                    card=r.card_id,
                    from_status=None,
                    to_status="active",
                    actor=ACTOR,
                    reason="imported",
                )
                for r in chunk
            ]
        ).run()
    return hits


async def _write_batch(
    platform: Platform, rows: list[Prepared], report: ImportReport, stage: str
) -> list[Rejection]:
    """One transaction: the new rows with their cards and events, and the batch's audit row; the
    rows refused for meeting a different registry record are returned.  A concurrent writer
    taking a key first makes the statement fail as a whole; it is tried again (and then finds
    that row)."""
    if not rows:
        return []
    postgres = isinstance(platform.engine, PostgresEngine)
    for attempt in range(RETRIES):
        try:
            async with platform.engine.transaction() as transaction:
                hits = await (
                    _write_postgres(transaction.connection, rows, stage)
                    if postgres
                    else _write_sqlite(rows)
                )
                refused = [r for r in map(judge, hits) if r is not None]
                imported = len(rows) - len(hits)
                if imported:
                    await audit(
                        ACTOR,
                        "card.import",
                        "import",
                        report.run_id,
                        lines=f"{rows[0].line}-{rows[-1].line}",
                        imported=imported,
                    )
            break
        except Exception as exc:
            if not is_unique_violation(exc) or attempt == RETRIES - 1:
                raise
    report.imported += imported
    report.already_imported += len(hits) - len(refused)
    return refused


# --- the import ---------------------------------------------------------------------------------


async def import_csv(
    platform: Platform,
    path: Path,
    *,
    show_progress: bool = True,
    batch: int | None = None,
    workers: int = 0,
    stage: str = "copy",
    from_line: int = 0,
    on_reject: Callable[[Rejection], None] | None = None,
    on_batch: Callable[[ImportReport], None] | None = None,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import ``path``; ``workers`` processes check and encrypt rows (0: one thread beside the
    writer), ``stage`` is how PostgreSQL receives a batch (``copy`` or ``unnest``), ``from_line``
    skips the rows before it (resuming), ``on_reject`` sees every refusal in line order,
    ``on_batch`` the report after each batch is written.  Pass
    ``report`` to keep the counts of an import that is interrupted."""
    if stage not in STAGE_METHODS:
        raise ValueError(f"stage must be one of {STAGE_METHODS}")
    report = report if report is not None else ImportReport()
    postgres = isinstance(platform.engine, PostgresEngine)
    size = batch or (BATCH if postgres else SQLITE_BATCH)
    cipher, index_key = platform.field_cipher, platform.index_key
    executor: concurrent.futures.Executor
    if workers > 0:
        executor = concurrent.futures.ProcessPoolExecutor(
            workers,
            initializer=_start_worker,
            initargs=(platform.keys.ring.secrets.key("field_key"), index_key),
        )
        work: Callable[..., tuple[list[Prepared], list[Rejection]]] = _prepare_in_worker
        extra: tuple[Any, ...] = ()
    else:
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="import-check")
        work, extra = prepare_batch, (cipher, index_key)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    progress = _progress(show_progress, path.stat().st_size)
    try:
        with path.open("rb") as raw_file:
            counter = _CountingReader(raw_file)
            text = io.TextIOWrapper(
                io.BufferedReader(counter, 1 << 20), encoding="utf-8-sig", newline=""
            )
            batches = read_batches(text, size, from_line)
            pending: list[
                tuple[list[Record], asyncio.Future[tuple[list[Prepared], list[Rejection]]]]
            ] = []
            depth = max(workers, 1) + 1
            exhausted = False
            with progress:
                task = progress.add_task("importing", total=path.stat().st_size, rate="")
                while pending or not exhausted:
                    while not exhausted and len(pending) < depth:
                        records = _next_batch(batches)
                        if records is None:
                            exhausted = True
                            break
                        pending.append(
                            (records, loop.run_in_executor(executor, work, records, *extra))
                        )
                    if not pending:
                        break
                    records, future = pending.pop(0)
                    ready, refused = await future
                    refused += await _write_batch(platform, ready, report, stage)
                    for rejection in sorted(refused):
                        report.refuse(rejection)
                        if on_reject:
                            on_reject(rejection)
                    report.rows += len(records)
                    report.done_through = records[-1][0]
                    report.seconds = time.perf_counter() - started
                    progress.update(
                        task, completed=counter.count, rate=f"{report.rows_per_second:,.0f} rows/s"
                    )
                    if on_batch:
                        on_batch(report)
    except UnicodeDecodeError:
        raise ImportFailed(f"the file is not UTF-8 (after line {report.done_through})") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        report.seconds = time.perf_counter() - started
    return report


def _next_batch(batches: Iterator[list[Record]]) -> list[Record] | None:
    return next(batches, None)


def _progress(show: bool, total: int) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    )


# --- the command --------------------------------------------------------------------------------

DESCRIPTION = """\
Stream a CSV of persons with their cards into the registry. Header (any order, extra columns
ignored): name,gender,ethnicity,identity_number,region,card_number,chip_serial,
identification_code,issue_date,expiry_date. Each refused row is reported by line number and reason
code (bad_shape, invalid_field, invalid_identity_number, invalid_region, expiry_not_after_issue,
duplicate_in_file, conflicts_with_registry), never by its values. Rows already in the registry as
they are count as already imported, so an interrupted import is finished by running it again
(--from-line skips the lines already done). Exit status: 0 all rows imported or already there,
3 some rows refused, 2 the file refused whole."""


def register_cli(registry: Any) -> None:
    """Add ``import`` to the ``ecard registry`` commands."""
    import argparse

    command = registry.add_parser(
        "import",
        help="bulk-import persons and cards from CSV (streamed; millions of rows)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("file")
    command.add_argument(
        "--batch",
        type=int,
        default=None,
        help=f"rows per transaction (default {BATCH}; SQLite {SQLITE_BATCH})",
    )
    command.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that check and encrypt rows (default 0: one thread beside the writer)",
    )
    command.add_argument(
        "--stage",
        choices=STAGE_METHODS,
        default="copy",
        help="how PostgreSQL receives a batch: COPY into a temporary table (default) or unnest()",
    )
    command.add_argument(
        "--from-line", type=int, default=0, help="skip the rows before this line (resuming)"
    )
    command.add_argument(
        "--rejects", help="write every refused row's line, reason code and field to this CSV"
    )
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.set_defaults(func=import_cli)


def import_cli(args: Any) -> int:
    """``ecard registry import``."""
    import sys

    from ecard.cli import _settings, _with_platform

    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    if (args.batch is not None and args.batch < 1) or args.workers < 0:
        print("--batch must be at least 1 and --workers at least 0", file=sys.stderr)
        return 2
    settings = _settings(args)
    report = ImportReport()
    shown = 0
    rejects_file = open(args.rejects, "w", encoding="utf-8", newline="") if args.rejects else None  # noqa: SIM115
    rejects = csv.writer(rejects_file) if rejects_file else None
    if rejects:
        rejects.writerow(("line", "reason", "detail"))

    def on_reject(rejection: Rejection) -> None:
        nonlocal shown
        if rejects:
            rejects.writerow(rejection)
        if shown < 100:
            print(f"  line {rejection.line}: {rejection}")
            shown += 1

    on_terminal = sys.stderr.isatty()
    last_said = [time.monotonic()]

    def on_batch(progress: ImportReport) -> None:
        """Without a terminal (a log file), a line every ten seconds instead of the bar."""
        if not args.quiet and not on_terminal and time.monotonic() - last_said[0] >= 10:
            last_said[0] = time.monotonic()
            print(
                f"{progress.rows:,} rows through line {progress.done_through:,}: "
                f"{progress.imported:,} imported, {progress.rejected_count:,} rejected, "
                f"{progress.rows_per_second:,.0f} rows/s",
                file=sys.stderr,
                flush=True,
            )

    try:
        asyncio.run(
            _with_platform(
                settings,
                lambda p: import_csv(
                    p,
                    path,
                    show_progress=not args.quiet and on_terminal,
                    batch=args.batch,
                    workers=args.workers,
                    stage=args.stage,
                    from_line=args.from_line,
                    on_reject=on_reject,
                    on_batch=on_batch,
                    report=report,
                ),
            )
        )
    except ImportFailed as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(report.summary())
        print(
            f"interrupted: every row through line {report.done_through} is done; run the same "
            f"command again (rows already imported are counted as such), or add --from-line "
            f"{report.done_through + 1}",
            file=sys.stderr,
        )
        return 130
    finally:
        if rejects_file:
            rejects_file.close()
    if report.rejected_count > shown:
        print(
            f"  … and {report.rejected_count - shown} more"
            + (f" (all in {args.rejects})" if args.rejects else " (--rejects FILE lists them all)")
        )
    print(report.summary())
    for code, count in sorted(report.reasons.items()):
        print(f"  {code}: {count}")
    return 3 if report.rejected_count else 0
