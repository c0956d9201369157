"""Step-up with the 电子社保卡密码: approving a scan-to-login and approving a consent request need
the holder's password, checked before anything is approved; the ID token says so (acr, amr)."""

from __future__ import annotations

import jwt

from tests.consent.conftest import ConsentWorld
from tests.helpers import HOLDER_PASSWORD, World
from tests.oidc.conftest import (
    Holder,
    callback_params,
    confirm_login,
    file_client,
    new_holder,
    redeem,
    start_login,
)


async def approve_login(world: World, session_id: str, holder: Holder, body: dict | None):
    return await world.client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=body
    )


async def test_scan_to_login_needs_the_password(world: World) -> None:
    client = world.client
    rp = await file_client(world)
    holder = await new_holder(world)
    session_id = await start_login(client, rp)
    assert (
        await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    ).status_code == 200
    missing = await approve_login(world, session_id, holder, {})
    assert missing.status_code == 400 and missing.json()["code"] == "password_required"
    wrong = await approve_login(world, session_id, holder, {"password": "000001"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "password_invalid"
    assert "2 attempt(s) left" in wrong.json()["detail"]
    assert "000001" not in wrong.json()["detail"]
    # nothing was approved: the page still waits
    polled = await client.get(
        f"/oidc/login/{session_id}/poll", params={"known": "pending", "wait": "false"}
    )
    assert polled.json()["state"] == "scanned"
    right = await approve_login(world, session_id, holder, {"password": HOLDER_PASSWORD})
    assert right.status_code == 200 and right.json()["state"] == "approved"
    params = callback_params(await confirm_login(client, session_id))
    tokens = await redeem(client, rp, params["code"])
    assert tokens.status_code == 200, tokens.text
    claims = jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})
    assert claims["acr"] == "urn:ecard:acr:scan-login:pwd" and "pwd" in claims["amr"]


async def test_a_holder_without_a_password_cannot_approve_a_login(world: World) -> None:
    rp = await file_client(world)
    person = await world.person_with_card()
    issued = await world.issue(person, password=None)
    holder = Holder(issued["session"]["access_token"], issued["ecard"]["id"], person["card_id"])
    session_id = await start_login(world.client, rp)
    await world.client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    response = await approve_login(world, session_id, holder, {"password": HOLDER_PASSWORD})
    assert response.status_code == 409 and response.json()["code"] == "password_not_set"


async def test_consent_approval_needs_the_password(cw: ConsentWorld) -> None:
    consent_id = (await cw.ask()).json()["id"]
    path = f"/holder/v1/consent/requests/{consent_id}/approve"
    missing = await cw.client.post(path, json={}, headers=cw.holder.headers)
    assert missing.status_code == 400 and missing.json()["code"] == "password_required"
    wrong = await cw.client.post(path, json={"password": "000001"}, headers=cw.holder.headers)
    assert wrong.status_code == 403 and wrong.json()["code"] == "password_invalid"
    pending = await cw.client.get("/holder/v1/consent/requests", headers=cw.holder.headers)
    assert [r["id"] for r in pending.json()] == [consent_id]  # still pending: nothing was granted
    right = await cw.client.post(
        path,
        json={"password": HOLDER_PASSWORD, "scopes": ["card.status"]},
        headers=cw.holder.headers,
    )
    assert right.status_code == 200 and right.json()["status"] == "granted"
