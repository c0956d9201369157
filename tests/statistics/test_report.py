"""The signed monthly report for the national tier: it verifies with the root key; a tampered
one, another key's, or one breaking the release rules is refused (module and command)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.reasons import OfflineError
from ecard.statistics import aggregate
from ecard.statistics.report import ReportRefused, check_report, open_report, sign_report
from ecard.statistics.service import StatisticsService
from tests.helpers import World, platform_of
from tests.statistics.conftest import HOUR, placed_verifier, verifications


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def _tamper(token: str) -> str:
    head, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["tables"][0]["cells"][0]["events"] += 1
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{raw}.{signature}"


async def test_the_monthly_report_verifies_and_a_tampered_one_does_not(
    client: httpx.AsyncClient, world: World, tmp_path
) -> None:
    platform = platform_of(client)
    verifier = await placed_verifier(world, "330102")
    await verifications(verifier, [n % 20 for n in range(60)])
    await aggregate.aggregate_hours(platform, [HOUR])
    token = await StatisticsService(platform).signed_report("330000", "2026-11")
    root = platform.keys.ring.root.public_key()
    report = open_report(token, root)
    check_report(report, province="330000")
    assert report.month == "2026-11" and report.tables[0].group_by == ["day"]
    assert report.tables[0].cells[0].events == 60 and report.tables[0].cells[0].cards == 20
    with pytest.raises(OfflineError):
        open_report(_tamper(token), root)
    with pytest.raises(OfflineError):
        open_report(token, ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(ReportRefused, match="wrong_province"):
        check_report(report, province="310000")
    low = msgspec.structs.replace(report, k=5)
    with pytest.raises(ReportRefused, match="threshold_too_low"):
        check_report(low)
    # the command line checks a file the same way
    good, bad = tmp_path / "good.jws", tmp_path / "bad.jws"
    good.write_text(token)
    bad.write_text(_tamper(token))
    env = {"ECARD_KEYS_DIR": platform.settings.keys_dir, "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "ecard.cli", "statistics", "verify-report"]
    ok = await asyncio.to_thread(_run, [*command, str(good)], env)
    assert ok.returncode == 0 and "valid: report of 330000 for 2026-11" in ok.stdout
    refused = await asyncio.to_thread(_run, [*command, str(bad)], env)
    assert refused.returncode == 1 and "refused" in refused.stderr


def test_a_report_that_breaks_the_rules_is_refused_even_if_signed() -> None:
    from ecard.statistics.schemas import MonthlyReport, ReportTable, UsageCell

    key = ec.generate_private_key(ec.SECP256R1())
    report = MonthlyReport(
        publisher="330000",
        province="330000",
        month="2026-11",
        issued_at=0,
        k=10,
        tables=[
            ReportTable(
                group_by=["day"], cells=[UsageCell(day="2026-11-01", events=9)], suppressed=0
            )
        ],
    )
    opened = open_report(sign_report(report, key), key.public_key())
    with pytest.raises(ReportRefused, match="cell_below_threshold"):
        check_report(opened)


@pytest.mark.parametrize("command", ["aggregate", "report", "verify-report", "grant"])
def test_documented_commands_answer_help(command: str) -> None:
    done = _run([sys.executable, "-m", "ecard.cli", "statistics", command, "--help"])
    assert done.returncode == 0 and command in done.stdout
