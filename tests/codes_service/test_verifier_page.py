"""The service-hall verifier page in headless Chromium against a real server: staff log in, a
keyboard-wedge scanner types each code and Enter, the page shows the verdict large and in colour,
with the masked identity or the reason, in Chinese or English."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import require
from tests.live import LiveServer, _ok, new_channel, new_holder

pytestmark = pytest.mark.browser

ENTITLEMENTS = ["masked_name", "masked_identity_number", "card_status"]
GREEN, RED = "rgb(26, 127, 55)", "rgb(207, 34, 46)"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    require(shutil.which("chromium") is not None, "Chromium", "run scripts/install_browser.sh")
    live = LiveServer.start()
    yield live
    live.stop()


async def seed(url: str) -> tuple[dict, dict[str, str]]:
    """A verifier (id and secret) and the holder's session header."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        login = _ok(
            await http.post(
                "/operator/v1/login",
                json={"username": "admin", "password": "correct horse battery"},
            )
        )
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        channel = await new_channel(http, admin, "app")
        holder_token, _ = await new_holder(http, admin, channel)
        verifier = _ok(
            await http.post(
                "/operator/v1/clients",
                headers=admin,
                json={
                    "kind": "verifier",
                    "name": "西湖区社保服务大厅",
                    "entitlements": ENTITLEMENTS,
                },
            )
        )
    return verifier, {"Authorization": f"Bearer {holder_token}"}


async def fresh_code(url: str, holder: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        return _ok(await http.post("/holder/v1/codes", headers=holder))["code"]


async def scan(page, code: str) -> str:
    """What a keyboard-wedge scanner does: type the text into the focused field, then Enter."""
    await page.keyboard.type(code)
    await page.keyboard.press("Enter")
    answered = page.locator("#result:not([data-state=idle]):not([data-state=checking])")
    await answered.wait_for()  # Enter set "checking" synchronously, so this is the new answer
    return await answered.get_attribute("data-state")


async def border_colour(page) -> str:
    return await page.eval_on_selector("#result", "e => getComputedStyle(e).borderTopColor")


async def test_staff_scan_codes_and_see_the_verdict(server: LiveServer, browser_page) -> None:
    page = browser_page
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    verifier, holder = await seed(server.url)
    await page.goto(f"{server.url}/verifier/")
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    assert (
        await page.locator("#login").is_visible() and not await page.locator("#scan").is_visible()
    )

    # a wrong secret is refused on the page, and the secret field is emptied
    await page.fill("#client-id", verifier["id"])
    await page.fill("#client-secret", "eccs_wrong")
    await page.click("#login button[type=submit]")
    await page.locator("#login-error").wait_for(state="visible")
    assert await page.input_value("#client-secret") == ""
    await page.fill("#client-secret", verifier["client_secret"])
    await page.click("#login button[type=submit]")
    await page.locator("#scan").wait_for(state="visible")
    assert await page.evaluate("document.activeElement.id") == "code"  # ready for the scanner
    assert await page.locator("#who").inner_text() == "西湖区社保服务大厅"
    assert verifier["client_secret"] not in await page.evaluate("JSON.stringify(sessionStorage)")

    # a genuine code: big green, masked identity only
    code = await fresh_code(server.url, holder)
    assert await scan(page, code) == "valid"
    assert await page.locator("#verdict-zh").inner_text() == "有效"
    assert await border_colour(page) == GREEN
    assert await page.locator("dd[data-field=masked_name]").inner_text() == "张*三"
    masked_id = await page.locator("dd[data-field=masked_identity_number]").inner_text()
    assert "*" in masked_id and len(masked_id) == 18
    assert await page.locator("dd[data-field=card_status]").inner_text() == "正常"
    assert (
        await page.input_value("#code") == ""
        and await page.evaluate("document.activeElement.id") == "code"
    )
    assert (
        float(
            await page.eval_on_selector(".verdict", "e => parseFloat(getComputedStyle(e).fontSize)")
        )
        >= 48
    )

    # the same code again: red, with the reason, in Chinese and then in English
    await page.click("header .brand")  # a click elsewhere must not steal the scanner's focus
    assert await scan(page, code) == "invalid"
    assert await border_colour(page) == RED
    assert await page.locator("#reason-zh").inner_text() == "二维码已被使用"
    assert await page.locator("#reason-code").inner_text() == "already_used"
    assert await page.locator("#fields dd").count() == 0
    await page.click("#lang-toggle")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert (
        await page.locator("#verdict-en").is_visible()
        and not await page.locator("#verdict-zh").is_visible()
    )
    assert await page.locator("#verdict-en").inner_text() == "INVALID"
    assert await page.locator("#reason-en").inner_text() == "The code was already used"

    # not a code at all
    await page.click("main")
    assert await scan(page, "https://example.com/not-a-card") == "invalid"
    assert await page.locator("#reason-code").inner_text() == "wrong_prefix"

    # the language choice survives a reload, and so does the 15-minute session
    await page.reload()
    assert await page.locator("html").get_attribute("lang") == "en"
    await page.locator("#scan").wait_for(state="visible")
    assert await scan(page, await fresh_code(server.url, holder)) == "valid"
    token = await page.evaluate(
        "JSON.parse(sessionStorage.getItem('ecard.verifier.session')).token"
    )
    await page.click("#logout")
    assert await page.locator("#login").is_visible()
    # the logout ended the session on the server too: its token is refused from then on
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(50):
            answer = await http.post(
                "/verifier/v1/verifications",
                json={"code": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code == 401:
                break
            await asyncio.sleep(0.1)
    assert answer.status_code == 401 and answer.json()["code"] == "token_invalid"
    assert not [p for p in problems if "Content Security Policy" in p], problems


def test_the_page_carries_the_security_headers(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/verifier/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert '<script src="/verifier/static/verifier.js"' in response.text
    assert httpx.get(f"{server.url}/verifier/static/verifier.js").status_code == 200
