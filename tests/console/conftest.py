"""Console helpers: a browser-like HTTP client per operator (its own cookie jar) on the app of the
``client`` fixture, signed in through the console's own sign-in form."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tests.conftest import OPERATOR_PASSWORD
from tests.helpers import platform_of

CSRF = re.compile(r'name="_csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no form token on the page"
    return found.group(1)


class Browser:
    """An operator's browser: cookies kept, redirects not followed (tests look at them)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""
        self.username = ""

    async def sign_in(self, username: str, password: str = OPERATOR_PASSWORD) -> httpx.Response:
        form = await self.http.get("/console/login")
        assert form.status_code == 200, form.text[:300]
        response = await self.http.post(
            "/console/login",
            data={"_csrf": csrf_of(form.text), "username": username, "password": password},
        )
        if response.status_code == 303:
            home = await self.http.get("/console/")
            assert home.status_code == 200, home.text[:300]
            self.csrf = csrf_of(home.text)
        return response

    async def get(self, path: str, **kwargs: object) -> httpx.Response:
        return await self.http.get(path, **kwargs)  # type: ignore[arg-type]

    async def post(
        self, path: str, data: dict[str, str], *, csrf: str | None = None
    ) -> httpx.Response:
        return await self.http.post(
            path, data={"_csrf": self.csrf if csrf is None else csrf, **data}
        )


OpenBrowser = Callable[..., Awaitable[Browser]]


@pytest.fixture()
async def browser(client: httpx.AsyncClient) -> AsyncIterator[OpenBrowser]:
    """``await browser(role)``: a new operator of ``role``, signed in to the console in its own
    browser; ``await browser(None)``: a browser nobody signed in to."""
    from ecard.registry.service import AccessService

    opened: list[httpx.AsyncClient] = []

    async def open_browser(role: str | None = "admin") -> Browser:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=client.app),  # type: ignore[attr-defined]
            base_url="http://testserver.local",
        )
        opened.append(http)
        page = Browser(http)
        if role is not None:
            username = f"{role}-{uuid.uuid4().hex[:6]}"
            await AccessService(platform_of(client)).create_operator(
                username, OPERATOR_PASSWORD, role
            )
            page.username = username
            signed = await page.sign_in(username)
            assert signed.status_code == 303, signed.text[:500]
        return page

    yield open_browser
    for http in opened:
        await http.aclose()
