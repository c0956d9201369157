"""``ecard registry import`` as an operator runs it: the summary with rows per second and a count
per reason code, the rejects file (line, reason, field — never a value), exit statuses, and a
re-run that finds every good row already imported."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from ecard.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))
import make_registry_csv


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECARD_DATABASE_URL", f"sqlite:///{tmp_path}/ecard.db")
    monkeypatch.setenv("ECARD_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("ECARD_LOG_LEVEL", "WARNING")


def registry(path: Path, rows: int, **options: object) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        make_registry_csv.write(handle, rows, **{"seed": 11, "region": "330000", **options})
    return path


def test_an_import_reports_rows_per_second_reasons_and_a_rejects_file(
    env, tmp_path, capsys
) -> None:
    path = registry(tmp_path / "people.csv", 120, bad_every=30)
    rejects = tmp_path / "rejects.csv"
    command = ["registry", "import", str(path), "--batch", "50", "--quiet"]
    assert main([*command, "--rejects", str(rejects)]) == 3
    out = capsys.readouterr().out
    assert "imported 116 row(s), rejected 4, already imported 0; 120 row(s) in" in out
    assert "rows/s)" in out
    for reason in ("invalid_identity_number", "invalid_region", "invalid_field"):
        assert f"  {reason}: 1" in out
    listed = list(csv.reader(io.StringIO(rejects.read_text(encoding="utf-8"))))
    assert listed == [
        ["line", "reason", "detail"],
        ["31", "invalid_identity_number", "identity_number"],
        ["61", "invalid_region", "region"],
        ["91", "invalid_field", "gender"],
        ["121", "expiry_not_after_issue", "expiry_date"],
    ]
    # run again: the good rows are there as they are, the bad ones are refused again
    assert main(command) == 3
    assert "imported 0 row(s), rejected 4, already imported 116" in capsys.readouterr().out


def test_a_clean_file_run_twice_succeeds_twice(env, tmp_path, capsys) -> None:
    path = registry(tmp_path / "people.csv", 60)
    assert main(["registry", "import", str(path), "--quiet"]) == 0
    assert main(["registry", "import", str(path), "--quiet", "--from-line", "40"]) == 0
    assert "imported 0 row(s), rejected 0, already imported 22" in capsys.readouterr().out


def test_a_file_that_cannot_be_imported_is_refused_whole(env, tmp_path, capsys) -> None:
    assert main(["registry", "import", str(tmp_path / "missing.csv")]) == 2
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,identity_number\n", encoding="utf-8")
    assert main(["registry", "import", str(wrong)]) == 2
    assert "missing_columns" in capsys.readouterr().err
    good = registry(tmp_path / "people.csv", 3)
    assert main(["registry", "import", str(good), "--batch", "0"]) == 2
