"""The device authorization grant (RFC 8628): a device without a browser shows a code, the
holder enters it in the app and approves, the device polls for tokens."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.oidc.conftest import APPROVAL, file_client

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture()
async def device(world, monkeypatch):
    monkeypatch.setenv("ECARD_OIDC_POLICY", json.dumps({"device_interval": 1}))
    return await file_client(
        world,
        client_type="public",
        token_endpoint_auth_method="none",
        redirect_uris=["http://127.0.0.1/unused"],
    )


async def start(client, device, scope="openid profile") -> dict:
    response = await client.post(
        "/oidc/device_authorization", data={"client_id": device.client_id, "scope": scope}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def poll(client, device, device_code: str):
    return await client.post(
        "/oidc/token",
        data={
            "grant_type": DEVICE_GRANT,
            "device_code": device_code,
            "client_id": device.client_id,
        },
    )


async def test_a_device_logs_in_when_the_holder_approves_its_code(client, device, holder):
    started = await start(client, device)
    assert started["interval"] == 1 and started["verification_uri"].endswith("/oidc/device")
    assert started["user_code"] in started["verification_uri_complete"]
    assert (await poll(client, device, started["device_code"])).json()[
        "error"
    ] == "authorization_pending"
    assert (await poll(client, device, started["device_code"])).json()["error"] == "slow_down"
    typed = started["user_code"].lower().replace("-", " ")  # what a person types
    described = await client.get(
        "/holder/v1/logins/", params={"user_code": typed}, headers=holder.headers()
    )
    assert described.status_code == 200, described.text
    session_id = described.json()["session_id"]
    assert (
        await client.post(
            f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
        )
    ).status_code == 200
    await asyncio.sleep(1.1)
    tokens = await poll(client, device, started["device_code"])
    assert tokens.status_code == 200 and tokens.json()["id_token"]
    info = await client.get(
        "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
    )
    assert info.json()["name"] == "张*三"
    await asyncio.sleep(1.1)
    assert (await poll(client, device, started["device_code"])).json()[
        "error"
    ] == "expired_token"  # single use


async def test_a_denied_device_login_says_access_denied(client, device, holder):
    started = await start(client, device)
    described = await client.get(
        "/holder/v1/logins/", params={"user_code": started["user_code"]}, headers=holder.headers()
    )
    await client.post(
        f"/holder/v1/logins/{described.json()['session_id']}/deny", headers=holder.headers()
    )
    assert (await poll(client, device, started["device_code"])).json()["error"] == "access_denied"


async def test_device_codes_belong_to_their_client(client, world, device):
    started = await start(client, device)
    other = await file_client(
        world,
        client_type="public",
        token_endpoint_auth_method="none",
        redirect_uris=["http://127.0.0.1/other"],
    )
    assert (await poll(client, other, started["device_code"])).json()["error"] == "invalid_grant"
    assert (await poll(client, device, "made-up")).json()["error"] == "expired_token"


async def test_user_codes_cannot_be_guessed_quickly(client, device, holder):
    statuses = [
        (
            await client.get(
                "/holder/v1/logins/", params={"user_code": "BCDF-GHJK"}, headers=holder.headers()
            )
        ).status_code
        for _ in range(12)
    ]
    assert statuses[0] == 404 and statuses[-1] == 429


async def test_device_scopes_are_checked(client, device):
    for scope in ("openid email", "profile"):
        response = await client.post(
            "/oidc/device_authorization", data={"client_id": device.client_id, "scope": scope}
        )
        assert response.json()["error"] == "invalid_scope"
