"""Helpers the test packages share: plain functions, constants and the ``World`` of actors.

Fixtures are not here: they live in ``tests/conftest.py`` (and in each package's own
``conftest.py``), and a test takes them by parameter. Import from this module what a test calls.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.identity import check_digit
from ecard.crypto.jwk import public_jwk
from ecard.registry.evidence import sign_evidence

if TYPE_CHECKING:
    from litestar import Litestar

    from ecard.platform import Platform

#: under CI (``CI=true``) a missing real component fails its tests instead of skipping them
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: Debian's Chromium, which the browser tests drive through playwright (scripts/install_browser.sh)
CHROMIUM = "/usr/bin/chromium"


def require(available: bool, what: str, how: str) -> None:
    """Skip (locally) or fail (under CI) when a real component is missing."""
    if available:
        return
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"CI requires {message}", pytrace=False)
    pytest.skip(message)


def port_open(url: str, default_port: int) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port (one-second wait)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def admin_sql(url: str, sql: str) -> None:
    """Run one statement (``CREATE DATABASE`` and the like) on the PostgreSQL server at ``url``."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at the database ``name``."""
    return urlparse(server_url)._replace(path=f"/{name}").geturl()


@asynccontextmanager
async def lifespan_of(app: Litestar) -> AsyncIterator[None]:
    """Hold the app's lifespan open in one task of the current loop (anyio cancel scopes inside it
    must be left by the task that entered them; fixture teardown may run in another task)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # start-up failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task


def platform_of(client: httpx.AsyncClient) -> Platform:
    """The platform (services, stores, settings) behind the ``client`` fixture's app."""
    return client.app.state.platform  # type: ignore[attr-defined, no-any-return]


def basic(client_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic authentication headers (RFC 7617) for a client id and secret."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    """Bearer authentication headers (RFC 6750) for an access token."""
    return {"Authorization": f"Bearer {token}"}


def identity_number(
    region: str = "330000", birth: str | None = None, serial: int | None = None
) -> str:
    """A valid, random identity number: birth day and serial both vary, so the dozens of people a
    test creates do not collide (a serial alone would, about once in ten tests)."""
    entropy = uuid.uuid4().int
    serial = entropy % 1000 if serial is None else serial
    if birth is None:
        birth = (dt.date(1950, 1, 1) + dt.timedelta(days=(entropy >> 10) % 20_000)).strftime(
            "%Y%m%d"
        )
    first17 = f"{region[:2]}0102{birth}{serial:03d}"
    return first17 + check_digit(first17)


#: The 电子社保卡密码 World.issue sets for each holder (not trivial for any birth date).
HOLDER_PASSWORD = "482915"


def channel_key_pair() -> tuple[str, dict[str, str]]:
    """A channel's P-256 key: the private key (PEM) and the public JWK the platform registers."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode(), public_jwk(key.public_key())


@dataclass
class World:
    """Actors for a test: operators of each role, a channel, a department; helpers to add
    holders."""

    client: httpx.AsyncClient
    tokens: dict[str, str]
    channel: dict[str, str]
    department: dict[str, str]

    def op(self, role: str = "admin") -> dict[str, str]:
        return bearer(self.tokens[role])

    async def person_with_card(
        self, name: str = "张小三", region: str = "330000"
    ) -> dict[str, str]:
        number = identity_number(region)
        person = await self.client.post(
            "/operator/v1/persons",
            json={"name": name, "gender": "1", "identity_number": number, "region": region},
            headers=self.op(),
        )
        assert person.status_code == 201, person.text
        card_number = "C" + uuid.uuid4().hex[:10].upper()
        card = await self.client.post(
            "/operator/v1/cards",
            json={
                "person_id": person.json()["id"],
                "card_number": card_number,
                "region": region,
                "chip_serial": uuid.uuid4().hex[:16].upper(),
                "identification_code": uuid.uuid4().hex[:24].upper(),
                "issue_date": "2024-01-01",
                "expiry_date": "2034-01-01",
            },
            headers=self.op(),
        )
        assert card.status_code == 201, card.text
        return {
            "name": name,
            "identity_number": number,
            "card_number": card_number,
            "person_id": person.json()["id"],
            "card_id": card.json()["id"],
        }

    def evidence_for(
        self,
        holder: dict[str, str],
        channel: dict[str, str] | None = None,
        method: str = "face_liveness",
        **overrides: Any,
    ) -> str:
        """The channel's 实人 evidence for ``holder``, signed with the channel's key, as a channel
        makes it after its check (``overrides``: sign_evidence's keywords, e.g. ``checked_at``)."""
        channel = channel or self.channel
        arguments = {
            "channel_id": channel["client_id"],
            "audience": platform_of(self.client).settings.public_url,
            "identity_number": holder["identity_number"],
            "method": method,
            "reference": f"ref-{uuid.uuid4().hex[:12]}",
            **overrides,
        }
        return sign_evidence(channel["private_key_pem"], **arguments)

    async def issue(
        self,
        holder: dict[str, str],
        channel: dict[str, str] | None = None,
        password: str | None = HOLDER_PASSWORD,
    ) -> dict[str, Any]:
        """Issue an e-card to ``holder`` through ``channel`` (with 实人 evidence) and, unless
        ``password`` is None, make sure the person's 电子社保卡密码 is ``password``."""
        channel = channel or self.channel
        response = await self.client.post(
            "/channel/v1/ecards",
            json={
                **{k: holder[k] for k in ("name", "identity_number", "card_number")},
                "evidence": self.evidence_for(holder, channel),
            },
            headers=basic(channel["client_id"], channel["client_secret"]),
        )
        assert response.status_code == 201, response.text
        issued = response.json()
        if password is not None:
            await self.set_password(issued["session"]["access_token"], password)
        return issued

    async def set_password(self, access_token: str, password: str = HOLDER_PASSWORD) -> None:
        """Set the person's 电子社保卡密码 through a holder session (already set: left as it is)."""
        response = await self.client.post(
            "/holder/v1/password", json={"password": password}, headers=bearer(access_token)
        )
        assert response.status_code in (201, 409), response.text

    async def new_client(self, kind: str, name: str | None = None, **extra: Any) -> dict[str, str]:
        """Register a client; a channel gets a P-256 key for its 实人 evidence unless ``public_jwk``
        is given (its private key, PEM, is ``private_key_pem`` of the answer)."""
        private_pem = None
        if kind == "channel" and "public_jwk" not in extra:
            private_pem, extra["public_jwk"] = channel_key_pair()
        response = await self.client.post(
            "/operator/v1/clients",
            json={"kind": kind, "name": name or f"{kind}-{uuid.uuid4().hex[:8]}", **extra},
            headers=self.op(),
        )
        assert response.status_code == 201, response.text
        body = response.json()
        made = {"client_id": body["id"], "client_secret": body["client_secret"]}
        if private_pem is not None:
            made["private_key_pem"] = private_pem
        return made
