"""The `ecard` command: keys lifecycle, refusals, demo data and CSV import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecard.cli import main
from ecard.crypto.identity import check_digit


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecard.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,  # the tests read the exit status
    )


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


def test_keys_init_rotate_withdraw(env, capsys) -> None:
    assert main(["keys", "init", "--region", "330000", "--region", "110000"]) == 0
    assert main(["keys", "init"]) == 1  # never overwrites silently
    assert (Path(env["ECARD_KEYS_DIR"]) / "keyring.json").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert main(["keys", "rotate", "330000"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("retired") == 1 and listing.count("active") == 4  # root + 2 regions + new
    retired = next(
        line.split()[0] for line in listing.splitlines() if "retired" in line and "issuer" in line
    )
    assert main(["keys", "withdraw", retired]) == 0
    assert main(["keys", "withdraw", retired]) == 1
    assert "already withdrawn" in capsys.readouterr().err


def test_serve_refuses_several_workers_on_the_in_process_store(env, capsys) -> None:
    assert main(["serve", "--workers", "2"]) == 2
    assert "ECARD_REDIS_URL" in capsys.readouterr().err


def test_a_bad_setting_stops_start_up_naming_it(env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ECARD_PORT", "not-a-port")
    assert main(["serve"]) == 2
    assert "ECARD_PORT" in capsys.readouterr().err


def test_demo_init_writes_working_credentials(env, tmp_path) -> None:
    out = tmp_path / "demo.json"
    assert main(["demo", "init", "--out", str(out)]) == 0
    demo = json.loads(out.read_text())
    assert {
        "operator",
        "channel",
        "holder",
        "relying_party",
        "verifier",
        "terminal",
        "department",
    } <= set(demo)
    assert demo["holder"]["access_token"].startswith("echa_")
    assert main(["demo", "init", "--out", str(out)]) == 0  # re-running refreshes secrets
    assert json.loads(out.read_text())["operator"]["password"] != demo["operator"]["password"]


def _number(serial: int) -> str:
    first17 = f"33010219800101{serial:03d}"
    return first17 + check_digit(first17)


def test_csv_import_writes_whole_rows_and_reports_rejected_ones(env, tmp_path, capsys) -> None:
    header = (
        "name,gender,ethnicity,identity_number,region,card_number,chip_serial,identification_code,"
        "issue_date,expiry_date\n"
    )
    good = [
        f"张{i}{i},1,01,{_number(i)},330000,A{i:08d},00AA{i:04d},330000{i:012d},2020-01-01,2030-01-01\n"
        for i in range(1, 6)
    ]
    dates = "2020-01-01,2030-01-01"
    bad = [
        # a wrong check digit
        f"李四,1,01,330102198001019999,330000,B00000001,00BB0001,330000999999999999,{dates}\n",
        # the same identity number twice in the file
        f"王五,1,01,{_number(1)},330000,B00000002,00BB0002,330000999999999998,{dates}\n",
        # an unknown gender
        f"赵六,3,01,{_number(7)},330000,B00000003,00BB0003,330000999999999997,{dates}\n",
        # an unknown region
        f"钱七,1,01,{_number(8)},990000,B00000004,00BB0004,330000999999999996,{dates}\n",
        # expiry before issue
        f"孙八,1,01,{_number(9)},330000,B00000005,00BB0005,330000999999999995,2030-01-01,2020-01-01\n",
    ]
    path = tmp_path / "people.csv"
    path.write_text(header + "".join(good + bad), encoding="utf-8")
    assert main(["registry", "import", str(path)]) == 3
    out = capsys.readouterr().out
    assert "imported 5 row(s), rejected 5" in out
    for line in range(7, 12):
        assert f"line {line}:" in out
    assert "duplicate of line 2" in out
    # importing the same file again is safe: the good rows are found as they are (already
    # imported, not refused), the bad ones are refused again
    assert main(["registry", "import", str(path)]) == 3
    assert "imported 0 row(s), rejected 5, already imported 5" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_db_migrate_applies_every_migration_and_exits(
    backend: str, env, request: pytest.FixtureRequest
) -> None:
    """On a new database and again on a migrated one; the process ends (it once hung on SQLite)."""
    environ = {**os.environ, **env}
    if backend == "postgres":
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue("fresh_postgres_url")
    for _ in range(2):
        migrated = run("db", "migrate", env=environ)
        assert migrated.returncode == 0 and "migrations applied" in migrated.stdout, migrated.stderr
