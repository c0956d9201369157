"""The scale test's tools: the synthetic registry generator (deterministic, valid, unique keys,
streaming), the check of one row (any input gives a row or a reason code, never the value), and
every command ``docs/CAPACITY.md`` shows (each runs, at least with ``--help``)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.crypto.identity import normalize_identity_number
from ecard.registry import importer
from ecard.registry.service import region_codes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
import make_registry_csv


def generated(rows: int, **options: object) -> str:
    out = io.StringIO()
    make_registry_csv.write(out, rows, **{"seed": 5, "region": "330000", **options})
    return out.getvalue()


def test_the_generator_is_deterministic_for_a_seed() -> None:
    assert generated(300) == generated(300)
    assert generated(300) != generated(300, seed=6)
    assert generated(300).startswith(generated(100))  # streaming: a prefix is the smaller file


def test_generated_rows_pass_the_importers_checks_with_unique_keys() -> None:
    rows = list(csv.DictReader(io.StringIO(generated(2000))))
    checked = [importer.check_row(row) for row in rows]
    for key in ("identity_number", "card_number", "identification_code"):
        assert len({getattr(r, key) for r in checked}) == len(rows), key
    assert all(normalize_identity_number(r["identity_number"]) for r in rows)
    assert {r.region for r in checked} == {"330000"}
    homes = {r["identity_number"][:2] for r in rows}
    assert "33" in homes and len(homes) > 5  # some born in other provinces
    assert {r["identity_number"][:2] + "0000" for r in rows} <= region_codes()
    assert all((int(r["identity_number"][16]) % 2 == 1) == (r["gender"] == "1") for r in rows)


def test_bad_rows_come_where_asked_and_are_refused_by_the_importer() -> None:
    rows = list(csv.DictReader(io.StringIO(generated(40, bad_every=10))))
    refused = []
    for line, row in enumerate(rows, start=2):
        try:
            importer.check_row(row)
        except importer.RowRefused as exc:
            refused.append((line, exc.code))
    assert refused == [
        (11, "invalid_identity_number"),
        (21, "invalid_region"),
        (31, "invalid_field"),
        (41, "expiry_not_after_issue"),
    ]


def test_the_generator_refuses_an_unknown_region() -> None:
    with pytest.raises(ValueError, match="not a region code"):
        generated(1, region="990000")


@given(st.dictionaries(st.sampled_from(importer.COLUMNS), st.text(max_size=40), max_size=12))
def test_any_row_is_checked_or_refused_with_a_code_never_its_values(raw: dict[str, str]) -> None:
    row = {column: raw.get(column, "") for column in importer.COLUMNS}
    try:
        importer.check_row(row)
    except importer.RowRefused as exc:
        assert exc.code in {
            importer.INVALID_FIELD,
            importer.INVALID_IDENTITY_NUMBER,
            importer.INVALID_REGION,
            importer.EXPIRY_NOT_AFTER_ISSUE,
        }
        assert exc.detail in ("", *importer.COLUMNS)


_SHOWN = re.compile(r"^\.venv/bin/python (scripts/bench/[a-z_]+\.py)(.*)$")


def capacity_commands() -> list[str]:
    text = (ROOT / "docs" / "CAPACITY.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if _SHOWN.match(line)]


def test_capacity_shows_how_to_reproduce_the_scale_test() -> None:
    shown = capacity_commands()
    assert any("scale_registry.py" in c for c in shown)
    assert any("make_registry_csv.py" in c for c in shown)


@pytest.mark.parametrize("command", capacity_commands())
def test_every_command_capacity_shows_runs(command: str) -> None:
    match = _SHOWN.match(command)
    assert match is not None
    arguments = match.group(2).split("#")[0].split()
    done = subprocess.run(
        [sys.executable, str(ROOT / match.group(1)), *arguments, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr


def test_the_generator_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench" / "make_registry_csv.py"),
            *("--rows", "25", "--seed", "5", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == generated(25)
