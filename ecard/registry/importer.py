"""Bulk import of persons with their cards from CSV (``ecard registry import FILE.csv``).

Every row is checked before anything is written (shape, identity number, region, duplicates within
the file and against the registry); valid rows are written in transactions of up to
:data:`BATCH` rows, each row as one person plus its card — never a person without its card.
Rejected rows are reported with their line number and reason.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from rich.progress import Progress

from ecard.crypto.identity import InvalidIdentityNumber, birth_date_of, normalize_identity_number
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry import schemas
from ecard.registry.service import audit, check_region, new_id
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
BATCH = 500
ACTOR = "system:import"


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


@dataclass
class ImportReport:
    imported: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _parse(raw: dict[str, str]) -> ImportRow:
    row = msgspec.convert({k: (v or "").strip() for k, v in raw.items()}, ImportRow, strict=False)
    try:
        number = normalize_identity_number(row.identity_number)
    except InvalidIdentityNumber as exc:
        raise ValueError(f"identity_number: {exc}") from None
    try:
        check_region(row.region)
    except AppError:
        raise ValueError(f"region: {row.region} is not a province-level region code") from None
    if row.expiry_date <= row.issue_date:
        raise ValueError("expiry_date must be after issue_date")
    return msgspec.structs.replace(row, identity_number=number)


async def import_csv(platform: Platform, path: Path, *, show_progress: bool = True) -> ImportReport:
    from ecard.registry.service import RegistryService

    report = ImportReport()
    index_of = RegistryService(platform)._index
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            report.rejected.append((1, f"missing column(s): {', '.join(missing)}"))
            return report
        rows: list[tuple[int, ImportRow]] = []
        seen: dict[str, int] = {}
        for raw in reader:
            line = reader.line_num
            try:
                row = _parse({k: raw.get(k, "") for k in COLUMNS})
            except (msgspec.ValidationError, ValueError) as exc:
                report.rejected.append((line, str(exc)))
                continue
            keys = (
                f"id:{row.identity_number}",
                f"card:{row.card_number}",
                f"chip:{row.identification_code}",
            )
            duplicate = next((k for k in keys if k in seen), None)
            if duplicate:
                report.rejected.append(
                    (line, f"duplicate of line {seen[duplicate]} ({duplicate.split(':')[0]})")
                )
                continue
            seen.update(dict.fromkeys(keys, line))
            rows.append((line, row))

    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("importing", total=len(rows))
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            existing = await _existing(chunk, index_of)
            fresh = []
            for line, row in chunk:
                clash = existing & {
                    ("id", index_of(row.identity_number)),
                    ("card", row.card_number),
                    ("chip", row.identification_code),
                }
                if clash:
                    report.rejected.append((line, f"already in the registry ({min(clash)[0]})"))
                else:
                    fresh.append((line, row))
            report.imported += await _write(platform, fresh, report, index_of)
            progress.advance(task, len(chunk))
    report.rejected.sort()
    return report


async def _existing(chunk: list[tuple[int, ImportRow]], index_of) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    indexes = [index_of(r.identity_number) for _, r in chunk]
    numbers = [r.card_number for _, r in chunk]
    chips = [r.identification_code for _, r in chunk]
    found: set[tuple[str, str]] = set()
    found |= {
        ("id", r["id_number_index"])
        for r in await Person.select(Person.id_number_index).where(
            Person.id_number_index.is_in(indexes)
        )
    }
    found |= {
        ("card", r["card_number"])
        for r in await Card.select(Card.card_number).where(Card.card_number.is_in(numbers))
    }
    found |= {
        ("chip", r["identification_code"])
        for r in await Card.select(Card.identification_code).where(
            Card.identification_code.is_in(chips)
        )
    }
    return found


async def _write(
    platform: Platform, rows: list[tuple[int, ImportRow]], report: ImportReport, index_of
) -> int:  # type: ignore[no-untyped-def]
    """Write a batch in one transaction; if it fails (a concurrent writer), retry row by row."""
    if not rows:
        return 0
    try:
        async with platform.engine.transaction():
            for _, row in rows:
                await _write_row(platform, row, index_of)
        return len(rows)
    except Exception as exc:
        if not is_unique_violation(exc):
            raise
    if len(rows) == 1:
        report.rejected.append((rows[0][0], "already in the registry (written concurrently)"))
        return 0
    return sum([await _write(platform, [item], report, index_of) for item in rows])


async def _write_row(platform: Platform, row: ImportRow, index_of) -> None:  # type: ignore[no-untyped-def]
    person_id, card_id = new_id(), new_id()
    await Person.insert(
        Person(
            id=person_id,
            name=row.name,
            gender=row.gender,
            ethnicity=row.ethnicity,
            birth_date=birth_date_of(row.identity_number),
            region=row.region,
            id_number_enc=platform.field_cipher.encrypt(row.identity_number, f"person:{person_id}"),
            id_number_index=index_of(row.identity_number),
        )
    ).run()
    await Card.insert(
        Card(
            id=card_id,
            person=person_id,
            card_number=row.card_number,
            region=row.region,
            chip_serial=row.chip_serial,
            identification_code=row.identification_code,
            chip_reference=chip_reference(row.region, row.identification_code),
            issue_date=row.issue_date,
            expiry_date=row.expiry_date,
            status="active",
        )
    ).run()
    await CardStatusEvent.insert(
        CardStatusEvent(
            card=card_id, from_status=None, to_status="active", actor=ACTOR, reason="imported"
        )
    ).run()
    await audit(ACTOR, "card.import", "card", card_id)
