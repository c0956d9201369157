"""The operator console in headless Chromium against a real ``ecard serve``: an operator signs in,
finds a person, reports the card lost after confirming, takes a filing through approval; a
readonly operator sees masked data and no action buttons; no script or style the page CSP
refuses.  The main pages are photographed on the way (into ``ECARD_CONSOLE_SCREENSHOTS`` when
set — ``scripts/screenshots.py`` sets it to ``docs/screenshots`` — else a temporary folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require
from tests.helpers import identity_number
from tests.live import LiveServer, _ok

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "correct horse battery"  # what LiveServer gives its "admin"
READONLY_PASSWORD = "readonly horse battery"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    require(shutil.which("chromium") is not None, "Chromium", "run scripts/install_browser.sh")
    live = LiveServer.start()
    yield live
    live.stop()


def create_operator(server: LiveServer, username: str, role: str, password: str) -> None:
    """``ecard operator create`` against the server's database, as an administrator would."""
    workdir = server.workdir.name
    environ = {
        **os.environ,
        "ECARD_DATABASE_URL": f"sqlite:///{workdir}/ecard.db",
        "ECARD_KEYS_DIR": f"{workdir}/keys",
        "ECARD_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "ecard.cli", "operator", "create", username, "--role", role]
        + ["--password-stdin"],
        env=environ,
        cwd=workdir,
        input=(password + "\n").encode(),
        check=True,
        capture_output=True,
    )


async def seed(url: str) -> dict[str, str]:
    """A person with an active card and a submitted filing, made through the operator API."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        login = _ok(
            await http.post(
                "/operator/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
        )
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        number = identity_number("330000")
        person = _ok(
            await http.post(
                "/operator/v1/persons",
                json={
                    "name": "欧阳小明",
                    "gender": "1",
                    "identity_number": number,
                    "region": "330000",
                },
                headers=admin,
            )
        )
        card_number = "C" + uuid.uuid4().hex[:10].upper()
        card = _ok(
            await http.post(
                "/operator/v1/cards",
                json={
                    "person_id": person["id"],
                    "card_number": card_number,
                    "region": "330000",
                    "chip_serial": uuid.uuid4().hex[:16].upper(),
                    "identification_code": uuid.uuid4().hex[:24].upper(),
                    "issue_date": "2024-01-01",
                    "expiry_date": "2034-01-01",
                },
                headers=admin,
            )
        )
        filing = _ok(
            await http.post(
                "/operator/v1/applications",
                json={
                    "name": "杭州城市大脑",
                    "organisation": "杭州市数据资源管理局",
                    "capabilities": {"channel": {}},
                    "regions": ["330000"],
                },
                headers=admin,
            )
        )
        return {
            "identity_number": number,
            "card_number": card_number,
            "person_id": person["id"],
            "card_id": card["id"],
            "filing_id": filing["id"],
        }


SEED_USAGE = """
import asyncio
from ecard.directory.demo import seed_demo
from ecard.platform import open_platform
from ecard.settings import load_settings
from ecard.statistics.demo import seed_demo_usage

async def main():
    platform = await open_platform(load_settings(), migrate=False)
    try:
        await seed_demo(platform)
        await seed_demo_usage(platform)
    finally:
        await platform.close()

asyncio.run(main())
"""


def seed_usage(server: LiveServer) -> None:
    """The demo's directory and a month of its use (aggregated), in the server's database."""
    workdir = server.workdir.name
    environ = {
        **os.environ,
        "ECARD_DATABASE_URL": f"sqlite:///{workdir}/ecard.db",
        "ECARD_KEYS_DIR": f"{workdir}/keys",
        "ECARD_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-c", SEED_USAGE],
        env=environ,
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=240,
    )


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ECARD_CONSOLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def sign_in(page: Any, url: str, username: str, password: str) -> None:
    await page.goto(f"{url}/console/")
    assert page.url.endswith("/console/login")  # signed out: sent to the sign-in page
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#sign-in")
    await page.wait_for_url(f"{url}/console/")


async def take_step(page: Any, step: str) -> None:
    await page.click(f'#filing-actions a[data-step="{step}"]')
    await page.locator(f'#confirm[data-step="{step}"]').wait_for()
    await page.fill("#reason", f"{step}: 材料齐全")
    await page.click("#confirm-action")
    await page.locator("#notice").wait_for()


async def test_operators_at_work_in_a_real_browser(
    server: LiveServer,
    browser_page: Any,
    tmp_path: Path,
) -> None:
    page = browser_page
    problems: list[str] = []  # CSP refusals and script errors (a 404 favicon is neither)
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    seeded = await seed(server.url)
    create_operator(server, "viewer", "readonly", READONLY_PASSWORD)
    shots = shots_dir(tmp_path)
    await page.set_viewport_size({"width": 1280, "height": 800})
    url = server.url

    # sign in: a wrong password first, explained on the page
    await page.goto(f"{url}/console/login")
    response = await page.goto(f"{url}/console/login")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    await page.fill("#username", "admin")
    await page.fill("#password", "not the password")
    await page.click("#sign-in")
    await page.locator("#problem").wait_for()
    assert await page.locator("#problem").get_attribute("data-code") == "invalid_credentials"
    await page.screenshot(path=shots / "console-login.png")
    await sign_in(page, url, "admin", ADMIN_PASSWORD)
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    await page.screenshot(path=shots / "console-home.png")

    # find the person by identity number, open the card
    await page.click("#nav-persons")
    await page.fill("#identity_number", seeded["identity_number"])
    await page.click("#search")
    row = page.locator("#persons tr.person")
    assert await row.count() == 1
    assert await row.locator(".name").inner_text() == "欧阳小明"
    await page.screenshot(path=shots / "console-persons.png")
    await row.locator("a.open").click()
    assert (
        await page.locator('[data-field="identity_number"]').inner_text()
        == (seeded["identity_number"])
    )
    await page.screenshot(path=shots / "console-person.png")
    await page.click(f'#cards tr[data-id="{seeded["card_id"]}"] a.open')
    assert await page.locator("#card-status").get_attribute("data-status") == "active"

    # report it lost: the button leads to a confirmation, only the confirmation acts
    await page.click('#card-actions a[data-to="lost"]')
    await page.locator('#confirm[data-to="lost"]').wait_for()
    await page.fill("#reason", "持卡人到窗口挂失")
    await page.screenshot(path=shots / "console-confirm.png")
    await page.click("#confirm-action")
    await page.locator("#notice").wait_for()
    assert await page.locator("#card-status").get_attribute("data-status") == "lost"
    assert "持卡人到窗口挂失" in await page.locator("#history").inner_text()
    assert await page.locator('#card-actions a[data-to="active"]').count() == 1  # 解挂 offered
    await page.screenshot(path=shots / "console-card.png", full_page=True)

    # the filing queue: assess, security test, approve
    await page.click("#nav-filings")
    await page.click('#states a[data-state="submitted"]')
    assert await page.locator(f'#filings tr[data-id="{seeded["filing_id"]}"]').count() == 1
    await page.screenshot(path=shots / "console-filings.png")
    await page.click(f'#filings tr[data-id="{seeded["filing_id"]}"] a.open')
    for step in ("assess", "security_test", "approve"):
        await take_step(page, step)
    assert await page.locator("#filing-status").get_attribute("data-status") == "approved"
    assert await page.locator('#steps tr.step[data-step="approve"]').count() == 1
    # a credential rotation shows the new secret once
    await page.click("#rotate-secret")
    await page.locator("#new-secret").wait_for()
    assert len((await page.locator("#secret-value").inner_text()).strip()) > 20
    await page.screenshot(path=shots / "console-filing.png", full_page=True)

    # the audit trail names the moves, and the ledger audit passes
    await page.click("#nav-audit")
    await page.fill("#action", "card.status")
    await page.click("#audit-filters button[type=submit]")
    assert await page.locator('#audit tr.event[data-action="card.status"]').count() >= 1
    await page.fill("#action", "")
    await page.click("#audit-filters button[type=submit]")
    await page.screenshot(path=shots / "console-audit.png")
    await page.click("#nav-ledger")
    await page.click("#verify-ledger")
    assert await page.locator("#verification").get_attribute("data-ok") == "true"
    await page.screenshot(path=shots / "console-ledger.png")
    await page.click("#nav-packages")
    await page.screenshot(path=shots / "console-packages.png")
    await page.click("#nav-terminals")
    await page.screenshot(path=shots / "console-terminals.png")

    # English, then sign out
    await page.click("#lang-switch")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator("#nav-terminals").inner_text() == "Terminals"
    await page.click("#sign-out")
    await page.wait_for_url(f"{url}/console/login")
    await page.goto(f"{url}/console/persons")
    assert page.url.endswith("/console/login")

    # a readonly operator: masked data, no action buttons, no exact search
    await page.click("#lang-switch")  # back to Chinese
    await sign_in(page, url, "viewer", READONLY_PASSWORD)
    await page.click("#nav-persons")
    assert await page.locator("#identity_number").count() == 0
    await page.fill("#region", "330000")
    await page.click("#search")
    masked = page.locator(f'#persons tr[data-id="{seeded["person_id"]}"]')
    assert await masked.locator(".name").inner_text() == "欧**明"
    assert await masked.locator(".identity_number").inner_text() == (
        seeded["identity_number"][:6] + "*" * 12
    )
    await masked.locator("a.open").click()
    await page.click(f'#cards tr[data-id="{seeded["card_id"]}"] a.open')
    assert await page.locator("#card-actions").count() == 0
    assert await page.locator("a.button").count() == 0
    card_number = await page.locator('[data-field="card_number"]').inner_text()
    assert card_number.endswith(seeded["card_number"][-4:]) and "*" in card_number
    assert await page.locator('[data-field="chip_serial"]').count() == 0
    await page.screenshot(path=shots / "console-readonly-card.png", full_page=True)
    await page.goto(f"{url}/console/filings/{seeded['filing_id']}")
    assert await page.locator("#filing-actions").count() == 0
    assert await page.locator("#nav-audit").count() == 0

    # the statistics dashboard (k-suppressed figures, SVG charts) and the public service zone,
    # on a month of the demo's use at the zone's places
    seed_usage(server)
    await page.click("#nav-statistics")
    await page.locator("#dashboard svg").first.wait_for()
    assert await page.locator("#dashboard svg").count() >= 3
    await page.screenshot(path=shots / "console-statistics.png", full_page=True)
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await page.goto(f"{url}/zone/")
    await page.fill("#region", "3301")
    await page.select_option("#scenario", "medical")
    await page.click("#go")
    await page.locator("#institutions").wait_for()
    await page.screenshot(path=shots / "zone.png", full_page=True)
    assert problems == []
