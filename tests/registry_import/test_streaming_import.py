"""``ecard registry import`` at scale, on both storage backends: a file of many batches streamed
through, a bad row in the middle of a batch, clashes with the registry told apart from a re-run,
an interrupted import finished by running it again, and reports without personal data.

The files come from ``scripts/bench/make_registry_csv.py`` (the generator the scale benchmark
uses), with small batches so that a few hundred rows cross several batch boundaries."""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ecard.platform import Platform, open_platform
from ecard.registry import importer
from ecard.registry.importer import ImportReport, Rejection, import_csv
from ecard.registry.tables import AuditEvent, Card, CardStatusEvent, Person
from ecard.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))
import make_registry_csv

BATCH = 40


@pytest.fixture()
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    opened = await open_platform(settings, migrate=True)
    try:
        yield opened
    finally:
        await opened.close()


def registry_rows(count: int, seed: int = 3, **options: Any) -> list[list[str]]:
    return list(make_registry_csv.rows(count, seed=seed, region="330000", **options))


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(make_registry_csv.COLUMNS)
        writer.writerows(rows)
    return path


async def counts() -> tuple[int, int, int]:
    return (
        await Person.count(),
        await Card.count(),
        await CardStatusEvent.count().where(CardStatusEvent.reason == "imported"),
    )


async def orphans() -> int:
    """Persons without a card (the importer must never leave one)."""
    with_cards = {c["person"] for c in await Card.select(Card.person)}
    return sum(1 for p in await Person.select(Person.id) if p["id"] not in with_cards)


async def run(platform: Platform, path: Path, **options: Any) -> tuple[ImportReport, list]:
    seen: list[Rejection] = []
    options.setdefault("batch", BATCH)
    report = await import_csv(platform, path, show_progress=False, on_reject=seen.append, **options)
    return report, seen


async def test_a_file_of_many_batches_is_imported_whole(platform, tmp_path) -> None:
    rows = registry_rows(5 * BATCH + 7)
    report, refused = await run(platform, write_csv(tmp_path / "r.csv", rows))
    assert (report.rows, report.imported, report.rejected_count) == (len(rows), len(rows), 0)
    assert refused == [] and report.done_through == len(rows) + 1
    assert await counts() == (len(rows), len(rows), len(rows))
    assert await orphans() == 0
    # every identity number is stored encrypted and found by its blind index
    number = rows[123][3]
    person = (
        await Person.select()
        .where(Person.id_number_index == importer.blind_index(platform.index_key, number))
        .first()
    )
    assert person is not None and person["name"] == rows[123][0]
    assert platform.field_cipher.decrypt(person["id_number_enc"], f"person:{person['id']}") == (
        number
    )
    assert str(person["birth_date"]).replace("-", "") == number[6:14]
    # one audit row per written batch, naming the run and its lines, never a person
    audits = await AuditEvent.select().where(AuditEvent.action == "card.import")
    assert len(audits) == 6 and {a["target_id"] for a in audits} == {report.run_id}
    assert all(number not in str(a) and rows[123][0] not in str(a) for a in audits)


async def test_a_bad_row_in_the_middle_of_a_batch_is_refused_alone(platform, tmp_path) -> None:
    rows = registry_rows(3 * BATCH)
    middle = BATCH + BATCH // 2  # in the second batch
    rows[middle][3] = rows[middle][3][:17] + ("0" if rows[middle][3][17] != "0" else "1")
    rows[middle + 1][4] = "990000"
    rows[middle + 2][8], rows[middle + 2][9] = rows[middle + 2][9], rows[middle + 2][8]
    rows[middle + 3] = rows[middle + 3][:5]  # a short record
    report, refused = await run(platform, write_csv(tmp_path / "r.csv", rows))
    line = middle + 2  # the header is line 1
    assert refused == [
        Rejection(line, "invalid_identity_number", "identity_number"),
        Rejection(line + 1, "invalid_region", "region"),
        Rejection(line + 2, "expiry_not_after_issue", "expiry_date"),
        Rejection(line + 3, "bad_shape", "5 fields, the header has 10"),
    ]
    assert report.imported == len(rows) - 4 and report.rejected == refused
    assert await counts() == (len(rows) - 4, len(rows) - 4, len(rows) - 4)
    assert dict(report.reasons) == {
        "invalid_identity_number": 1,
        "invalid_region": 1,
        "expiry_not_after_issue": 1,
        "bad_shape": 1,
    }


async def test_duplicates_inside_a_batch_name_the_earlier_line(platform, tmp_path) -> None:
    rows = registry_rows(BATCH)
    rows[10][3] = rows[4][3]  # the same identity number as line 6
    rows[20][5] = rows[4][5]  # the same card number
    report, refused = await run(platform, write_csv(tmp_path / "r.csv", rows))
    assert refused == [
        Rejection(12, "duplicate_in_file", "identity_number, duplicate of line 6"),
        Rejection(22, "duplicate_in_file", "card_number, duplicate of line 6"),
    ]
    assert report.imported == BATCH - 2


async def test_a_rerun_counts_rows_already_there_and_refuses_clashes(platform, tmp_path) -> None:
    rows = registry_rows(2 * BATCH + 5)
    path = write_csv(tmp_path / "r.csv", rows)
    first, _ = await run(platform, path)
    assert first.imported == len(rows)
    again, refused = await run(platform, path)
    assert (again.imported, again.already_imported, again.rejected_count) == (0, len(rows), 0)
    assert refused == []
    # a new file that meets different registry records: each clash is refused, per row
    others = registry_rows(3, seed=99)
    others[0][3] = rows[7][3]  # someone else's identity number
    others[1][5] = rows[8][5]  # someone else's card number
    others[2][7] = rows[9][7]  # someone else's card identification code
    report, refused = await run(platform, write_csv(tmp_path / "o.csv", others))
    assert refused == [
        Rejection(2, "conflicts_with_registry", "identity_number"),
        Rejection(3, "conflicts_with_registry", "card_number"),
        Rejection(4, "conflicts_with_registry", "identification_code"),
    ]
    assert report.imported == 0 and await counts() == (len(rows),) * 3


async def test_an_interrupted_import_is_finished_by_running_it_again(
    platform, tmp_path, monkeypatch
) -> None:
    rows = registry_rows(4 * BATCH)
    path = write_csv(tmp_path / "r.csv", rows)
    real = importer._write_batch
    calls = 0

    async def failing_third_batch(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            async with args[0].engine.transaction():  # the batch's writes, then the crash
                await real(*args)
                raise KeyboardInterrupt
        return await real(*args)

    monkeypatch.setattr(importer, "_write_batch", failing_third_batch)
    report = ImportReport()
    with pytest.raises(KeyboardInterrupt):
        await import_csv(platform, path, show_progress=False, batch=BATCH, report=report)
    assert report.done_through == 2 * BATCH + 1  # lines 2..81 are done, the third batch is not
    assert await counts() == (2 * BATCH,) * 3 and await orphans() == 0
    monkeypatch.setattr(importer, "_write_batch", real)
    # resumed from the line it names: only the rest is read
    resumed, _ = await run(platform, path, from_line=report.done_through + 1)
    assert (resumed.rows, resumed.imported) == (2 * BATCH, 2 * BATCH)
    # or the whole file again: nothing is written twice, nothing refused
    again, refused = await run(platform, path)
    assert (again.imported, again.already_imported, refused) == (0, 4 * BATCH, [])
    assert await counts() == (4 * BATCH,) * 3 and await orphans() == 0


async def test_worker_processes_check_and_encrypt_the_same_way(platform, tmp_path) -> None:
    rows = registry_rows(3 * BATCH, bad_every=25)
    report, refused = await run(platform, write_csv(tmp_path / "r.csv", rows), workers=2)
    assert report.imported == len(rows) - len(refused) and len(refused) == len(rows) // 25
    assert [r.line for r in refused] == [25 * k + 1 for k in range(1, len(rows) // 25 + 1)]
    person = await Person.select().first()
    assert person is not None
    plain = platform.field_cipher.decrypt(person["id_number_enc"], f"person:{person['id']}")
    assert importer.blind_index(platform.index_key, plain) == person["id_number_index"]


@pytest.fixture(params=["postgres", "pgbouncer"])
def postgres_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL directly, and through PgBouncer in transaction pooling (the temporary table and
    COPY live inside the batch's transaction, so they stay on one server connection)."""
    name = "pgbouncer_migrated_url" if request.param == "pgbouncer" else "migrated_postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture()
async def postgres_platform(postgres_url: str, keys_dir: str) -> AsyncIterator[Platform]:
    from ecard.settings import load_settings

    settings = load_settings({"ECARD_DATABASE_URL": postgres_url, "ECARD_KEYS_DIR": keys_dir})
    opened = await open_platform(settings, migrate=True)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.mark.parametrize("stage", importer.STAGE_METHODS)
async def test_both_postgresql_paths_write_the_same(postgres_platform, tmp_path, stage) -> None:
    """COPY into a temporary table, or unnest() of arrays: the same rows, refusals and re-run."""
    platform = postgres_platform
    rows = registry_rows(2 * BATCH + 3)
    rows[5][3] = rows[2][3]
    report, refused = await run(platform, write_csv(tmp_path / "r.csv", rows), stage=stage)
    assert refused == [Rejection(7, "duplicate_in_file", "identity_number, duplicate of line 4")]
    assert report.imported == len(rows) - 1
    assert await counts() == (len(rows) - 1,) * 3
    again, _ = await run(platform, write_csv(tmp_path / "r.csv", rows), stage=stage)
    assert again.already_imported == len(rows) - 1


async def test_reports_and_logs_carry_no_personal_data(platform, tmp_path, caplog) -> None:
    rows = registry_rows(BATCH, bad_every=4)
    rows[1][3] = rows[0][3]
    caplog.set_level(logging.DEBUG, logger="ecard")  # the service's own logs, all levels
    report, refused = await run(platform, write_csv(tmp_path / "r.csv", rows))
    assert len(refused) == report.rejected_count > 5
    logged = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("ecard"))
    said = " ".join(str(r) for r in refused) + " ".join(map(repr, refused)) + logged
    for row in rows:
        assert row[0] not in said and row[3] not in said and row[5] not in said


async def test_a_file_without_the_columns_is_refused_whole(platform, tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("name,identity_number\n张三,330102198001010011\n", encoding="utf-8")
    with pytest.raises(importer.ImportFailed, match="missing_columns"):
        await import_csv(platform, path, show_progress=False)
    path.write_bytes(",".join(make_registry_csv.COLUMNS).encode() + b"\n\xff\xfe not text\n")
    with pytest.raises(importer.ImportFailed, match="not UTF-8"):
        await import_csv(platform, path, show_progress=False)
    assert await Person.count() == 0
