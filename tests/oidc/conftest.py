"""Fixtures of the OpenID provider tests: the service on both backends (from tests/api), a filed
and live relying party, a holder with an e-card session, and a helper that runs scan-to-login."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from tests.helpers import HOLDER_PASSWORD, World, basic, bearer

REDIRECT_URI = "https://rp.example.test/callback"
#: the body of a holder's approval: the 电子社保卡密码 World.issue set (step-up)
APPROVAL = {"password": HOLDER_PASSWORD}
LOGOUT_URI = "https://rp.example.test/signed-out"


@dataclass
class RelyingParty:
    client_id: str
    client_secret: str | None
    redirect_uri: str = REDIRECT_URI

    def auth(self) -> dict[str, str]:
        return basic(self.client_id, self.client_secret or "")


@dataclass
class Holder:
    access_token: str
    ecard_id: str
    card_id: str

    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


async def file_client(world: World, *, live: bool = True, **overrides) -> RelyingParty:
    filing = {
        "name": f"rp-{uuid.uuid4().hex[:8]}",
        "redirect_uris": [REDIRECT_URI],
        "post_logout_redirect_uris": [LOGOUT_URI],
        "scopes": ["openid", "profile", "ecard"],
        "client_type": "confidential",
        "token_endpoint_auth_method": "client_secret_basic",
        "logo_uri": "https://rp.example.test/logo.png",
        **overrides,
    }
    response = await world.client.post("/operator/v1/oidc/clients", json=filing, headers=world.op())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    if live:
        for status in ("approved", "live"):
            changed = await world.client.post(
                f"/operator/v1/oidc/clients/{body['client_id']}/status",
                json={"status": status},
                headers=world.op(),
            )
            assert changed.status_code == 200, changed.text
    return RelyingParty(body["client_id"], body.get("client_secret"), filing["redirect_uris"][0])


@pytest.fixture()
async def rp(world: World) -> RelyingParty:
    return await file_client(world)


async def new_holder(world: World) -> Holder:
    person = await world.person_with_card()
    issued = await world.issue(person)
    return Holder(issued["session"]["access_token"], issued["ecard"]["id"], person["card_id"])


@pytest.fixture()
async def holder(world: World) -> Holder:
    return await new_holder(world)


SESSION_ID = re.compile(r'data-session="([^"]+)"')


async def start_login(client: AsyncTestClient, rp: RelyingParty, **params: str) -> str:
    """Open the authorization endpoint as a browser would; the QR's session id."""
    query = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid profile ecard",
        "state": "st-1",
        "nonce": "n-1",
        **params,
    }
    response = await client.get("/oidc/authorize", params=query)
    assert response.status_code == 200, response.text
    return SESSION_ID.search(response.text).group(1)


async def finish_login(client: AsyncTestClient, session_id: str):
    """The page's continue after a denial (an approval goes on through :func:`confirm_login`)."""
    return await client.get(f"/oidc/login/{session_id}/continue", follow_redirects=False)


async def confirm_login(client: AsyncTestClient, session_id: str):
    """The page's "是本人 / continue" after the holder approved: the code is issued now."""
    return await client.post(f"/oidc/login/{session_id}/confirm")


async def cancel_login(client: AsyncTestClient, session_id: str):
    """The page's "不是我 / cancel"."""
    return await client.post(f"/oidc/login/{session_id}/cancel")


def callback_params(response) -> dict[str, str]:
    """The client's callback parameters: from a 303 (continue) or a confirm/cancel answer."""
    if response.status_code == 200:
        location = response.json()["location"]
    else:
        assert response.status_code == 303, response.text
        location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def login_code(
    client: AsyncTestClient, rp: RelyingParty, holder: Holder, **params: str
) -> dict[str, str]:
    """The whole scan-to-login: page, scan, approve, continue; the callback's parameters."""
    session_id = await start_login(client, rp, **params)
    described = await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    assert described.status_code == 200, described.text
    approved = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    assert approved.status_code == 200, approved.text
    return callback_params(await confirm_login(client, session_id))


async def redeem(client: AsyncTestClient, rp: RelyingParty, code: str, **form: str):
    return await client.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            **form,
        },
        headers=rp.auth(),
    )
