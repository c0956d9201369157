"""``ecard registry import-deaths`` on a temporary SQLite database: the report (text and JSON),
exit codes, and ``--dry-run`` writing nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ecard.cli import main
from ecard.crypto.identity import check_digit

PERSONS = (
    "name,gender,ethnicity,identity_number,region,card_number,chip_serial,identification_code,"
    "issue_date,expiry_date\n"
)


def _number(serial: int) -> str:
    first17 = f"33010219600101{serial:03d}"
    return first17 + check_digit(first17)


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "ECARD_DATABASE_URL": f"sqlite:///{tmp_path}/ecard.db",
        "ECARD_KEYS_DIR": str(tmp_path / "keys"),
        "ECARD_LOG_LEVEL": "WARNING",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def snapshot(database: Path) -> tuple:
    with sqlite3.connect(database) as db:
        return (
            db.execute("SELECT count(*) FROM person WHERE deceased_on IS NOT NULL").fetchone()[0],
            db.execute(
                "SELECT status, count(*) FROM card GROUP BY status ORDER BY status"
            ).fetchall(),
            db.execute("SELECT count(*) FROM card_status_event").fetchone()[0],
            db.execute("SELECT count(*) FROM audit_event").fetchone()[0],
        )


def test_import_deaths_reports_and_a_dry_run_writes_nothing(env, tmp_path: Path, capsys) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        PERSONS
        + "".join(
            f"张{i},1,01,{_number(i)},330000,A{i:08d},00AA{i:04d},330000{i:012d},2020-01-01,2030-01-01\n"
            for i in range(1, 4)
        ),
        encoding="utf-8",
    )
    assert main(["registry", "import", str(people)]) == 0
    deaths = tmp_path / "deaths.csv"
    deaths.write_text(
        "\ufeffidentity_number,died_on,source_ref\n"
        f"{_number(1)},2026-11-30,GA-1\n"
        f"{_number(2)},2026-11-30,GA-2\n"
        f"{_number(9)},2026-11-30,GA-3\n"  # 4: no such person
        f"{_number(2)},1959-12-31,GA-4\n",  # 5: before birth
        encoding="utf-8",
    )
    database = tmp_path / "ecard.db"
    before = snapshot(database)
    capsys.readouterr()

    assert main(["registry", "import-deaths", str(deaths), "--dry-run"]) == 3
    out = capsys.readouterr().out
    assert "dry run" in out and "2 person(s) marked deceased" in out and "2 card(s) ended" in out
    assert "line 4: unknown_person" in out and "line 5: before_birth" in out
    assert _number(9) not in out
    assert snapshot(database) == before

    assert main(["registry", "import-deaths", str(deaths), "--json"]) == 3
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["rows_read"], report["persons_marked"], report["cards_ended"]) == (4, 2, 2)
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [
        (4, "unknown_person"),
        (5, "before_birth"),
    ]
    assert "4/4 rows" in captured.err  # plain progress when stdout is not a terminal
    persons, statuses, _, _ = snapshot(database)
    assert persons == 2 and statuses == [("active", 1), ("deceased", 2)]

    after = snapshot(database)
    assert main(["registry", "import-deaths", str(deaths), "--json"]) == 3
    again = json.loads(capsys.readouterr().out)
    assert (again["persons_marked"], again["cards_ended"], again["already_deceased"]) == (0, 0, 2)
    assert snapshot(database)[:3] == after[:3]  # only the import's own audit row is new


def test_import_deaths_refuses_a_file_it_cannot_take(env, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "absent.csv"
    assert main(["registry", "import-deaths", str(missing)]) == 2
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,died_on\n", encoding="utf-8")
    assert main(["registry", "import-deaths", str(wrong)]) == 2
    assert "death_records_invalid" in capsys.readouterr().err
