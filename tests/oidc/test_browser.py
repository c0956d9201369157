"""Scan-to-login in headless Chromium against a real server, from first load to the relying
party's callback: the QR is read off the screen, the holder answers through the app's API."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.conftest import require
from tests.live import LiveServer, Seeded, free_port, seed
from tests.oidc.conftest import APPROVAL, pkce_pair

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    require(shutil.which("chromium") is not None, "Chromium", "run scripts/install_browser.sh")
    live = LiveServer.start(policy=json.dumps({"login_session_ttl": 4, "long_poll_seconds": 2}))
    yield live
    live.stop()


@pytest.fixture()
async def browser_page(server: LiveServer) -> AsyncIterator:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(
            False, "playwright", "pip install 'playwright>=1.49,<2' (no browser download needed)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        page = await browser.new_page(locale="zh-CN")
        yield page
        await browser.close()


async def read_qr(page) -> str:
    """What a phone camera would read off the page."""
    import zxingcpp
    from PIL import Image

    shot = await page.locator("#qr").screenshot()
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)))
    assert results, "no QR code on the page"
    text = results[0].text
    assert text.startswith("ecard://login/")
    return text.removeprefix("ecard://login/")


@pytest.fixture(scope="module")
def relying_party() -> Iterator[str]:
    """The site's callback, on loopback (filings allow http only there); it just says
    "signed in"."""

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server names the handler so
            body = b"<!doctype html><p id=rp>signed in</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Callback)
    Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/callback"
    httpd.shutdown()


async def open_login(page, server: LiveServer, seeded: Seeded, challenge: str) -> None:
    query = {
        "response_type": "code",
        "client_id": seeded.client_id,
        "redirect_uri": seeded.redirect_uri,
        "scope": "openid profile ecard",
        "state": "browser-state",
        "nonce": "browser-nonce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    await page.goto(f"{server.url}/oidc/authorize?{urlencode(query)}")


async def callback_of(page, seeded: Seeded) -> dict[str, str]:
    """Wait until the browser lands on the site's callback; its query parameters."""
    await page.wait_for_url(f"{seeded.redirect_uri}**", timeout=10_000)
    await page.locator("#rp").wait_for()
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


async def test_scan_to_login_in_a_real_browser(server, browser_page, relying_party):
    page = browser_page
    seeded = await seed(server.url, relying_party)
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    verifier, challenge = pkce_pair()
    await open_login(page, server, seeded, challenge)
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    await page.click("#lang-toggle")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator(".msg[data-for=pending] .en").is_visible()

    session_id = await read_qr(page)
    holder = {"Authorization": f"Bearer {seeded.holder_token}"}
    async with httpx.AsyncClient(base_url=server.url) as app:
        described = await app.get(f"/holder/v1/logins/{session_id}", headers=holder)
        assert (
            described.status_code == 200
            and "HeadlessChrome" in described.json()["origin"]["user_agent"]
        )
        await page.locator(".msg[data-for=scanned]").wait_for(
            state="visible", timeout=5000
        )  # no reload
        assert (
            await app.post(f"/holder/v1/logins/{session_id}/approve", headers=holder, json=APPROVAL)
        ).status_code == 200
        # the page shows who approved (masked) and waits for the person at this browser
        await page.locator(".msg[data-for=approved_pending_confirmation]").wait_for(
            state="visible", timeout=5000
        )
        assert await page.locator("#holder-name").text_content() == "张*三"
        assert not await page.locator("#qr").is_visible()
        await asyncio.sleep(0.5)
        assert page.url.startswith(server.url)  # no code, no redirect before the confirmation
        await page.click("#confirm-login")
        callback = await callback_of(page, seeded)
        assert callback["state"] == "browser-state" and callback["iss"] == server.url
        tokens = await app.post(
            "/oidc/token",
            headers=seeded.rp_auth(),
            data={
                "grant_type": "authorization_code",
                "code": callback["code"],
                "redirect_uri": seeded.redirect_uri,
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200 and tokens.json()["id_token"]
    assert not [p for p in problems if "Content Security Policy" in p], problems


async def test_an_expired_qr_is_replaced_and_a_denial_returns_to_the_site(
    server, browser_page, relying_party
):
    page = browser_page
    seeded = await seed(server.url, relying_party)
    _, challenge = pkce_pair()
    await open_login(page, server, seeded, challenge)
    first = await read_qr(page)
    for _ in range(40):  # the QR lives 4 s on this server; the page swaps it in place
        await asyncio.sleep(0.25)
        if first not in (await page.locator("#qr").get_attribute("src") or first):
            break
    await page.locator(".msg[data-for=pending]").wait_for(state="visible", timeout=5000)
    second = await read_qr(page)
    assert second != first
    async with httpx.AsyncClient(base_url=server.url) as app:
        holder = {"Authorization": f"Bearer {seeded.holder_token}"}
        assert (
            await app.post(f"/holder/v1/logins/{first}/deny", headers=holder)
        ).status_code == 404
        assert (
            await app.post(f"/holder/v1/logins/{second}/deny", headers=holder)
        ).status_code == 200
    callback = await callback_of(page, seeded)
    assert callback["error"] == "access_denied" and callback["state"] == "browser-state"


async def test_not_me_cancels_the_login_in_the_browser(server, browser_page, relying_party):
    """Someone else scanned the QR and approved: the person at the browser sees a name that is
    not theirs, answers 不是我, and the site hears access_denied; the approval is gone."""
    page = browser_page
    seeded = await seed(server.url, relying_party)
    _, challenge = pkce_pair()
    await open_login(page, server, seeded, challenge)
    session_id = await read_qr(page)
    async with httpx.AsyncClient(base_url=server.url) as app:
        holder = {"Authorization": f"Bearer {seeded.holder_token}"}
        assert (
            await app.post(f"/holder/v1/logins/{session_id}/approve", headers=holder, json=APPROVAL)
        ).status_code == 200
        await page.locator("#cancel-login").wait_for(state="visible", timeout=5000)
        assert await page.locator("#holder-name").text_content() == "张*三"
        await page.click("#cancel-login")
        callback = await callback_of(page, seeded)
        assert (
            callback["error"] == "access_denied"
            and callback["state"] == "browser-state"
            and "code" not in callback
        )
        assert (
            await app.post(f"/holder/v1/logins/{session_id}/approve", headers=holder, json=APPROVAL)
        ).status_code == 404
