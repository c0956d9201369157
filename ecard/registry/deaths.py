"""Death records (死亡人员) imported in bulk — "系统管、台账清": every card of a person who died
ends, with every effect (:meth:`ecard.registry.card_life.CardLifeService.record_death`).

The file is CSV, UTF-8 (a BOM is allowed), one record per line, with the header
``identity_number,died_on,source_ref`` (columns in any order; other columns are ignored)::

    identity_number,died_on,source_ref
    330102195001011234,2026-11-30,GA-330102-2026-000123

Contracts:
- A row is read by :func:`parse_row`, which either returns a :class:`DeathRecord` or raises
  :class:`RowRejected` with one reason code of :data:`REASONS` — never any other exception, and
  never the row's content (no identity number is echoed back, logged or audited).
- The file is bounded (:data:`MAX_FILE_BYTES`, :data:`MAX_ROWS`) and refused whole, before any
  write, when it is over; it is then read line by line and processed in chunks of :data:`CHUNK`
  rows, so memory holds one chunk plus one 64-bit fingerprint per distinct person (to find
  duplicates in the file) and the first :data:`MAX_LISTED_REJECTIONS` rejections.
- Recording a death that is already recorded changes nothing: importing the same file again
  marks no one and ends no card (the rows count as ``already_deceased``).
- A dry run reads the registry and reports what an import would do; it writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ecard.crypto.fields import blind_index
from ecard.crypto.identity import InvalidIdentityNumber, birth_date_of, normalize_identity_number
from ecard.errors import AppError
from ecard.registry import lifecycle, schemas
from ecard.registry.audit import audit, new_id
from ecard.registry.lifecycle import Actor
from ecard.registry.tables import Card, Person

if TYPE_CHECKING:
    from ecard.platform import Platform

COLUMNS = ("identity_number", "died_on", "source_ref")
#: The largest file, and the most rows after the header, one import takes (the CLI's bounds).
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ROWS = 500_000
#: What one API call takes: its body is bounded by the service's ``max_body_bytes`` as well.
API_MAX_ROWS = 20_000
#: A record line longer than this is a malformed row (a real one is under 100 bytes).
MAX_LINE_BYTES = 1024
CHUNK = 1000
MAX_LISTED_REJECTIONS = 10_000
ACTOR = "system:death-import"

# reason codes of a rejected row (docs/lifecycle-operations.md lists them)
MALFORMED_ROW = "malformed_row"  # not UTF-8, not CSV, wrong number of fields, or too long
MALFORMED_DATE = "malformed_date"  # died_on is not an ISO date (YYYY-MM-DD)
INVALID_IDENTITY_NUMBER = (
    "invalid_identity_number"  # not a GB 11643 number (shape, date, check digit)
)
FUTURE_DATE = "future_date"  # died_on is after today
BEFORE_BIRTH = "before_birth"  # died_on is before the birth date the identity number holds
INVALID_SOURCE_REF = "invalid_source_ref"  # missing, too long, or not a plain reference
DUPLICATE_IN_FILE = "duplicate_in_file"  # the same person on an earlier line of the file
UNKNOWN_PERSON = "unknown_person"  # no person of the registry has this identity number
REASONS = frozenset(
    {
        MALFORMED_ROW,
        MALFORMED_DATE,
        INVALID_IDENTITY_NUMBER,
        FUTURE_DATE,
        BEFORE_BIRTH,
        INVALID_SOURCE_REF,
        DUPLICATE_IN_FILE,
        UNKNOWN_PERSON,
    }
)

#: A 公安/民政 record reference: ASCII letters, digits and ``._:/#()-``, up to 64 characters.
_SOURCE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#()-]{0,63}$")
#: ... that does not carry an identity number (15 or more digits in a row)
_NUMBER_RUN = re.compile(r"\d{15,}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOM = b"\xef\xbb\xbf"


class RowRejected(Exception):
    """A row that is not imported, with its reason code (one of :data:`REASONS`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Header:
    """Where each of :data:`COLUMNS` is in a row, and how many fields a row has."""

    positions: tuple[int, int, int]
    width: int


@dataclass(frozen=True, slots=True)
class DeathRecord:
    line: int
    identity_number: str  # normalized
    died_on: dt.date
    source_ref: str


# --- the pure core: lines → records or rejections ---------------------------------------------


def _fields(raw: bytes) -> list[str]:
    """Rule: a row is UTF-8 CSV on one line."""
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise RowRejected(MALFORMED_ROW) from None
    if "\x00" in text or "\n" in text or "\r" in text:
        raise RowRejected(MALFORMED_ROW)
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error:
        raise RowRejected(MALFORMED_ROW) from None
    if len(rows) != 1:
        raise RowRejected(MALFORMED_ROW)
    return [value.strip() for value in rows[0]]


def parse_header(raw: bytes) -> Header:
    """The header line (a UTF-8 BOM allowed); ``death_records_invalid`` unless it names every one
    of :data:`COLUMNS`, each once."""
    try:
        names = _fields(raw.removeprefix(_BOM))
    except RowRejected:
        raise AppError("death_records_invalid", "the header line is not UTF-8 CSV") from None
    missing = [c for c in COLUMNS if names.count(c) != 1]
    if missing:
        raise AppError(
            "death_records_invalid",
            f"the header must name {', '.join(COLUMNS)} once each (missing: {', '.join(missing)})",
        )
    first, second, third = (names.index(c) for c in COLUMNS)
    return Header((first, second, third), len(names))


def _identity(value: str) -> str:
    """Rule: a GB 11643 identity number (shape, birth date, check digit)."""
    try:
        return normalize_identity_number(value)
    except InvalidIdentityNumber:
        raise RowRejected(INVALID_IDENTITY_NUMBER) from None


def _date(value: str) -> dt.date:
    """Rule: ``died_on`` is an ISO calendar date, YYYY-MM-DD."""
    if not _ISO_DATE.match(value):
        raise RowRejected(MALFORMED_DATE)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RowRejected(MALFORMED_DATE) from None


def _not_future(died_on: dt.date, today: dt.date) -> None:
    """Rule: no one is recorded dead on a day still to come."""
    if died_on > today:
        raise RowRejected(FUTURE_DATE)


def _not_before_birth(died_on: dt.date, identity_number: str) -> None:
    """Rule: no one dies before the birth date their identity number holds."""
    if died_on < birth_date_of(identity_number):
        raise RowRejected(BEFORE_BIRTH)


def _source_ref(value: str) -> str:
    """Rule: the record's reference is a plain code that carries no identity number."""
    if not _SOURCE_REF.match(value) or _NUMBER_RUN.search(value):
        raise RowRejected(INVALID_SOURCE_REF)
    return value


def parse_row(line: int, raw: bytes, header: Header, today: dt.date) -> DeathRecord:
    """One data line as a record, or :class:`RowRejected` naming the first rule it breaks (in the
    order: CSV shape, identity number, date, not in the future, not before birth, reference)."""
    values = _fields(raw)
    if len(values) != header.width:
        raise RowRejected(MALFORMED_ROW)
    number_at, died_at, ref_at = header.positions
    number = _identity(values[number_at])
    died_on = _date(values[died_at])
    _not_future(died_on, today)
    _not_before_birth(died_on, number)
    return DeathRecord(line, number, died_on, _source_ref(values[ref_at]))


def read_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` for each physical line, the first being 1; a line longer than
    :data:`MAX_LINE_BYTES` comes as ``None`` (and is skipped without holding it in memory)."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(64 * 1024)
            yield number, None
            continue
        yield number, raw


def count_rows(handle: BinaryIO) -> int:
    """Lines after the header, counted in blocks; the handle is left at its start."""
    handle.seek(0)
    lines, last = 0, b"\n"
    while block := handle.read(1 << 20):
        lines += block.count(b"\n")
        last = block[-1:]
    handle.seek(0)
    return max(0, lines + (last != b"\n") - 1)


# --- the import --------------------------------------------------------------------------------


@dataclass
class _Tally:
    dry_run: bool
    rows_read: int = 0
    persons_marked: int = 0
    cards_ended: int = 0
    already_deceased: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def reject(self, line: int, code: str) -> None:
        self.by_reason[code] += 1
        self.rejected.append((line, code))
        if len(self.rejected) > 2 * MAX_LISTED_REJECTIONS:  # keep the lowest line numbers only
            self.rejected = sorted(self.rejected)[:MAX_LISTED_REJECTIONS]

    def report(self) -> schemas.DeathImportReport:
        listed = sorted(self.rejected)[:MAX_LISTED_REJECTIONS]
        total = sum(self.by_reason.values())
        return schemas.DeathImportReport(
            dry_run=self.dry_run,
            rows_read=self.rows_read,
            persons_marked=self.persons_marked,
            cards_ended=self.cards_ended,
            already_deceased=self.already_deceased,
            rejected_total=total,
            rejected_by_reason=dict(sorted(self.by_reason.items())),
            rejected=[
                schemas.DeathRecordRejection(line=line, reason=code) for line, code in listed
            ],
            rejected_truncated=total > len(listed),
        )


Progress = Callable[[int, int], None]  # (rows done, rows in the file)


@dataclass
class DeathImporter:
    """Imports one file of death records for ``actor`` (``operator:<id>`` or ``system:…``)."""

    platform: Platform
    actor: str
    actor_kind: Actor = "operator"
    dry_run: bool = False

    def _index(self, identity_number: str) -> str:
        return blind_index(self.platform.index_key, identity_number)

    async def run(
        self,
        handle: BinaryIO,
        *,
        max_rows: int = MAX_ROWS,
        progress: Progress | None = None,
        today: dt.date | None = None,
    ) -> schemas.DeathImportReport:
        """Import the records of ``handle`` (seekable, binary): the file is refused whole with
        ``death_records_too_large`` / ``death_records_invalid`` before any write when it has more
        than ``max_rows`` rows or a wrong header; otherwise every row is imported or rejected."""
        total = count_rows(handle)
        if total > max_rows:
            raise AppError(
                "death_records_too_large", f"{total} rows; at most {max_rows} per import"
            )
        today = today or dt.date.today()
        lines = read_lines(handle)
        first = next(lines, None)
        if first is None or first[1] is None:
            raise AppError("death_records_invalid", "the file has no header line")
        header = parse_header(first[1])
        tally = _Tally(self.dry_run)
        chunk: list[tuple[DeathRecord, str]] = []
        for line, raw in lines:
            if raw is not None and not raw.strip():
                continue  # blank lines are not rows
            tally.rows_read += 1
            if progress and tally.rows_read % CHUNK == 0:
                progress(tally.rows_read, total)
            try:
                if raw is None:
                    raise RowRejected(MALFORMED_ROW)
                record = parse_row(line, raw, header, today)
            except RowRejected as rejected:
                tally.reject(line, rejected.code)
                continue
            index = self._index(record.identity_number)
            fingerprint = int(
                index[:16], 16
            )  # 64 bits of the keyed index: no number kept in memory
            if fingerprint in tally.seen:
                tally.reject(line, DUPLICATE_IN_FILE)
                continue
            tally.seen.add(fingerprint)
            chunk.append((record, index))
            if len(chunk) >= CHUNK:
                await self._chunk(chunk, tally)
                chunk = []
        if chunk:
            await self._chunk(chunk, tally)
        if progress:
            progress(tally.rows_read, total)
        report = tally.report()
        if not self.dry_run:
            await audit(
                self.actor,
                "death_records.import",
                "death_import",
                new_id(),
                "death records imported",
                rows=report.rows_read,
                persons=report.persons_marked,
                cards=report.cards_ended,
                already_deceased=report.already_deceased,
                rejected=report.rejected_by_reason,
            )
        return report

    async def _chunk(self, chunk: list[tuple[DeathRecord, str]], tally: _Tally) -> None:
        persons = {
            row["id_number_index"]: row
            for row in await Person.select(
                Person.id, Person.id_number_index, Person.deceased_on
            ).where(Person.id_number_index.is_in([index for _, index in chunk]))
        }
        live_cards = (
            Counter(
                row["person"]
                for row in await Card.select(Card.person).where(
                    Card.person.is_in([p["id"] for p in persons.values()] or [""])
                    & Card.status.not_in(sorted(lifecycle.FINAL))
                )
            )
            if persons
            else Counter()
        )
        for record, index in chunk:
            person = persons.get(index)
            if person is None:
                tally.reject(record.line, UNKNOWN_PERSON)
                continue
            await self._record(record, person, live_cards[person["id"]], tally)

    async def _record(
        self, record: DeathRecord, person: dict, live_cards: int, tally: _Tally
    ) -> None:
        # imported here: the card's whole life is not needed for ``ecard --help``
        from ecard.registry.card_life import CardLifeService

        known = person["deceased_on"] is not None
        if known:
            tally.already_deceased += 1
            if not live_cards:
                return  # nothing to change
        if self.dry_run:
            tally.persons_marked += not known
            tally.cards_ended += live_cards
            return
        try:
            ended = await CardLifeService(self.platform).record_death(
                person["id"],
                record.died_on,
                self.actor,
                reason=f"death record {record.source_ref}",
                actor_kind=self.actor_kind,
            )
        except AppError as error:
            if error.code != "person_not_found":
                raise
            tally.reject(record.line, UNKNOWN_PERSON)
            return
        tally.cards_ended += len(ended)
        if not known:
            tally.persons_marked += 1
            await audit(
                self.actor,
                "person.deceased",
                "person",
                person["id"],
                "death record",
                source_ref=record.source_ref,
                cards=ended,
            )


async def import_deaths(
    platform: Platform,
    handle: BinaryIO,
    *,
    actor: str,
    actor_kind: Actor = "operator",
    dry_run: bool = False,
    max_rows: int = MAX_ROWS,
    progress: Progress | None = None,
    today: dt.date | None = None,
) -> schemas.DeathImportReport:
    """Import the death records of ``handle`` (see :class:`DeathImporter`)."""
    return await DeathImporter(platform, actor, actor_kind, dry_run).run(
        handle, max_rows=max_rows, progress=progress, today=today
    )


# --- the command: ecard registry import-deaths FILE [--dry-run] [--json] ----------------------


def register_cli(registry: argparse._SubParsersAction) -> None:
    """Add ``import-deaths`` to the ``ecard registry`` commands."""
    command = registry.add_parser(
        "import-deaths",
        help="import death records (死亡人员) from CSV: every card of each person ends",
        description=(
            "CSV with the header identity_number,died_on,source_ref (docs/lifecycle-operations.md)."
        ),
    )
    command.add_argument("file")
    command.add_argument(
        "--dry-run", action="store_true", help="report what would change; write nothing"
    )
    command.add_argument("--json", action="store_true", help="print the report as JSON")
    command.set_defaults(func=deaths_cli)


def _progress_display(on_terminal: bool) -> tuple[Progress, Callable[[], None]]:
    """A rich progress bar on a terminal, plain line counts on stderr otherwise."""
    if not on_terminal:
        step = 10_000
        printed = [0]

        def plain(done: int, total: int) -> None:
            if done != printed[0] and (done - printed[0] >= step or done >= total):
                print(f"{done}/{total} rows", file=sys.stderr, flush=True)
                printed[0] = done

        return plain, lambda: None
    from rich.progress import Progress as Bar

    bar = Bar(transient=True)
    task = bar.add_task("death records", total=None)
    bar.start()

    def fancy(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return fancy, bar.stop


def deaths_cli(args: argparse.Namespace) -> int:
    """``ecard registry import-deaths``: 0 when every row was imported, 3 when some were
    rejected, 2 when the file was refused whole."""
    import msgspec

    from ecard.cli import _settings, _with_platform

    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    if path.stat().st_size > MAX_FILE_BYTES:
        print(
            f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it", file=sys.stderr
        )
        return 2
    settings = _settings(args)
    progress, stop = _progress_display(sys.stdout.isatty())
    try:
        with path.open("rb") as handle:
            report = asyncio.run(
                _with_platform(
                    settings,
                    lambda p: import_deaths(
                        p,
                        handle,
                        actor=ACTOR,
                        actor_kind="system",
                        dry_run=args.dry_run,
                        progress=progress,
                    ),
                )
            )
    except AppError as error:
        stop()
        print(f"{error.code}: {error}", file=sys.stderr)
        return 2
    stop()
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(describe(report))
    return 3 if report.rejected_total else 0


def describe(report: schemas.DeathImportReport) -> str:
    """The report as lines of text (the CLI without ``--json``)."""
    lines = [
        (
            f"death records{' (dry run: nothing written)' if report.dry_run else ''}: "
            f"{report.rows_read} row(s) read, {report.persons_marked} person(s) marked deceased, "
            f"{report.cards_ended} card(s) ended, {report.already_deceased} already deceased, "
            f"{report.rejected_total} rejected"
        )
    ]
    lines += [f"  {code}: {count}" for code, count in report.rejected_by_reason.items()]
    lines += [f"  line {r.line}: {r.reason}" for r in report.rejected]
    if report.rejected_truncated:
        lines.append(f"  … and {report.rejected_total - len(report.rejected)} more")
    return "\n".join(lines)
