"""The service zone page ``/zone/`` in headless Chromium against a real server, on a phone-sized
screen: search by region and scenario, the list and the location view, both languages, and no
script or style the page CSP refuses."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import require
from tests.directory.conftest import institution, listing
from tests.live import LiveServer, _ok
from tests.oidc.test_browser import browser_page  # noqa: F401 - the Chromium page fixture

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    require(shutil.which("chromium") is not None, "Chromium", "run scripts/install_browser.sh")
    live = LiveServer.start()
    yield live
    live.stop()


async def seed(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        login = _ok(
            await http.post(
                "/operator/v1/login",
                json={"username": "admin", "password": "correct horse battery"},
            )
        )
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        from tests.directory.conftest import register_terminal

        terminal = await register_terminal(http, admin)
        _ok(
            await http.post(
                "/operator/v1/directory/institutions",
                json=institution("hz-first", terminals=[{"id": terminal}]),
                headers=admin,
            )
        )
        _ok(
            await http.post(
                "/operator/v1/directory/institutions",
                json=institution(
                    "hz-library",
                    name_zh="浙江图书馆",
                    name_en="Zhejiang Library",
                    kind="library",
                    region="330106",
                    scenarios=["culture"],
                    lat=30.2750,
                    lon=120.1450,
                ),
                headers=admin,
            )
        )
        filing = _ok(
            await http.post(
                "/operator/v1/clients",
                json={"kind": "verifier", "name": "掌上12333", "entitlements": ["card_status"]},
                headers=admin,
            )
        )
        _ok(
            await http.put(
                f"/operator/v1/directory/applications/{filing['id']}",
                json=listing(scenarios=["hrss", "medical"]),
                headers=admin,
            )
        )


async def test_search_the_zone_on_a_phone(server: LiveServer, browser_page) -> None:  # noqa: F811
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
    await seed(server.url)
    await page.set_viewport_size({"width": 390, "height": 844})
    response = await page.goto(f"{server.url}/zone/")
    assert response is not None and response.status == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert await page.locator("html").get_attribute("lang") == "zh-CN"

    await page.fill("#region", "3301")
    await page.select_option("#scenario", "medical")
    await page.click("#go")
    await page.locator("#institutions").wait_for()
    names = await page.locator("#institutions li.institution .name .zh").all_inner_texts()
    assert names == ["杭州市第一人民医院"]
    assert await page.locator("#applications li.application").count() == 1
    assert await page.locator("#institutions .tag").first.inner_text() == "实体社保卡"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390

    # near a point: distance and direction, and the location grid with "me" in the middle
    await page.goto(f"{server.url}/zone/?lat=30.2520&lon=120.1700&radius=5000")
    items = page.locator("#institutions li.institution")
    assert await items.count() == 2
    assert "0 m" in await items.nth(0).locator(".nearby").inner_text()
    second = await items.nth(1).locator(".nearby").inner_text()
    assert "km" in second and "西北" in second
    assert await page.locator("#grid td.me").count() == 1
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390

    # English by the toggle, kept by the next search
    await page.click("#lang-toggle")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await items.nth(1).locator(".name .en").is_visible()
    await page.fill("#q", "library")
    await page.click("#go")
    await page.locator("#institutions").wait_for()
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator("#institutions li.institution .name .en").all_inner_texts() == [
        "Zhejiang Library"
    ]

    # a bad parameter is explained on the page
    bad = await page.goto(f"{server.url}/zone/?scenario=casino&lang=en")
    assert bad is not None and bad.status == 400
    assert await page.locator("#problem").get_attribute("data-code") == "directory_scenario_unknown"
    assert problems == []
