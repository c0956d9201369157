"""The application catalogue over HTTP, on both backends: file, walk the workflow, search, and
authenticate only while live; entitlements checked against the catalogues."""

from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.jwk import public_jwk
from tests.helpers import basic, bearer, identity_number

APPS = "/operator/v1/applications"


def filing(**capabilities: object) -> dict:
    return {
        "name": f"合作系统-{uuid.uuid4().hex[:8]}",
        "organisation": "某市人社局 (a city bureau)",
        "capabilities": capabilities or {"department": {}},
    }


def probe() -> dict:
    return {"name": "张三", "identity_number": identity_number(), "card_number": "A1"}


async def check_identity(client, headers: dict) -> int:
    return (
        await client.post("/department/v1/identity-checks", json=probe(), headers=headers)
    ).status_code


async def go_live(client, world, application_id: str) -> dict:
    body: dict = {}
    for step in ("assess", "security_test", "approve", "go_live"):
        response = await client.post(
            f"{APPS}/{application_id}/steps",
            json={"step": step, "reason": f"{step} passed"},
            headers=world.op(),
        )
        assert response.status_code == 200, response.text
        body = response.json()
    return body


async def test_a_filing_works_only_once_live_and_steps_go_in_order(client, world):
    filed = await client.post(APPS, json=filing(department={}), headers=world.op())
    assert filed.status_code == 201, filed.text
    app = filed.json()
    assert app["status"] == "submitted" and app["client_secret"].startswith("eccs_")
    assert app["allowed_steps"] == ["assess", "reject"]
    auth = basic(app["id"], app["client_secret"])
    assert await check_identity(client, auth) == 403  # submitted: not live

    early = await client.post(
        f"{APPS}/{app['id']}/steps", json={"step": "go_live"}, headers=world.op()
    )
    assert early.status_code == 409 and early.json()["code"] == "client_status_conflict"

    live = await go_live(client, world, app["id"])
    assert live["status"] == "live" and "client_secret" not in live
    assert await check_identity(client, auth) == 200

    suspended = await client.post(
        f"{APPS}/{app['id']}/steps",
        json={"step": "suspend", "reason": "security incident"},
        headers=world.op(),
    )
    assert suspended.json()["status"] == "suspended"
    assert await check_identity(client, auth) == 403

    history = (await client.get(f"{APPS}/{app['id']}/steps", headers=world.op("readonly"))).json()
    assert [h["step"] for h in history] == [
        "submit",
        "assess",
        "security_test",
        "approve",
        "go_live",
        "suspend",
    ]
    assert all(h["actor"].startswith("operator:") and h["at"] for h in history)
    assert history[1]["reason"] == "assess passed"
    trail = await client.get(
        "/operator/v1/audit", params={"target_id": app["id"]}, headers=world.op("auditor")
    )
    actions = [e["action"] for e in trail.json()["items"]]
    assert actions.count("filing.step") == 5 and "filing.submit" in actions


async def test_only_administrators_file_and_take_steps(client, world):
    for role in ("registry_admin", "auditor", "readonly"):
        response = await client.post(APPS, json=filing(), headers=world.op(role))
        assert response.status_code == 403
    assert (await client.post(APPS, json=filing())).status_code == 401
    app = (await client.post(APPS, json=filing(), headers=world.op())).json()
    denied = await client.post(
        f"{APPS}/{app['id']}/steps", json={"step": "assess"}, headers=world.op("readonly")
    )
    assert denied.status_code == 403
    assert (
        await client.get(f"{APPS}/{app['id']}", headers=world.op("readonly"))
    ).status_code == 200
    missing = await client.get(f"{APPS}/nope", headers=world.op("readonly"))
    assert missing.status_code == 404 and missing.json()["code"] == "application_not_found"


async def test_a_typo_in_an_entitlement_is_a_400_naming_it(client, world):
    login = {"redirect_uris": ["https://rp.partner.test/cb"], "scopes": ["openid", "profil"]}
    for capabilities, typo in (
        ({"verifier": {"fields": ["masked_name", "ful_name"]}}, "ful_name"),
        ({"data": {"scopes": ["card.stauts"], "purposes": ["loan_application"]}}, "card.stauts"),
        ({"data": {"scopes": ["card.status"], "purposes": ["loan"]}}, "loan"),
        ({"terminal": {"entitlements": ["card_personal"]}}, "card_personal"),
        ({"login": login}, "profil"),
    ):
        response = await client.post(APPS, json=filing(**capabilities), headers=world.op())
        assert response.status_code == 400, (capabilities, response.text)
        assert response.json()["code"] == "entitlement_unknown"
        assert typo in response.json()["detail"]
    older = await client.post(
        "/operator/v1/clients",
        json={"kind": "verifier", "name": f"v-{uuid.uuid4().hex[:6]}", "entitlements": ["nmae"]},
        headers=world.op(),
    )
    assert older.status_code == 400 and older.json()["code"] == "entitlement_unknown"
    empty = await client.post(APPS, json=filing() | {"capabilities": {}}, headers=world.op())
    assert empty.status_code == 400


async def test_one_filing_for_login_and_data_and_listing_finds_it(client, world):
    both = filing(
        login={
            "redirect_uris": ["https://site.partner.test/cb"],
            "scopes": ["openid", "profile"],
        },
        data={"scopes": ["card.status"], "purposes": ["loan_application"]},
    )
    both["name"] = f"贷款网站-{uuid.uuid4().hex[:6]}"
    app = (await client.post(APPS, json=both, headers=world.op())).json()
    assert app["id"].startswith("rp_") and app["client_secret"].startswith("ecrp_")
    assert app["capabilities"]["login"]["sector"] == "site.partner.test"
    assert app["capabilities"]["data"] == {
        "scopes": ["card.status"],
        "purposes": ["loan_application"],
    }
    assert app["entitlements"] == ["card.status"]
    # the older path sees the same filing under the same id, in its vocabulary
    older = await client.get(f"/operator/v1/oidc/clients/{app['id']}", headers=world.op())
    assert older.status_code == 200 and older.json()["status"] == "pending"
    for _ in range(3):
        await client.post(APPS, json=filing(channel={}), headers=world.op())

    async def search(**params) -> dict:
        response = await client.get(APPS, params=params, headers=world.op("readonly"))
        assert response.status_code == 200, response.text
        return response.json()

    found = await search(q=both["name"][-6:].upper(), capability="login")
    assert [item["id"] for item in found["items"]] == [app["id"]]
    assert app["id"] in [i["id"] for i in (await search(capability="data"))["items"]]
    assert app["id"] not in [i["id"] for i in (await search(capability="channel"))["items"]]
    assert app["id"] in [i["id"] for i in (await search(status="submitted", limit=200))["items"]]
    assert app["id"] not in [i["id"] for i in (await search(status="live", limit=200))["items"]]
    bad = await client.get(APPS, params={"status": "active"}, headers=world.op("readonly"))
    assert bad.status_code == 400

    everything = await search(limit=200)
    seen, cursor = [], None
    while True:
        page = await search(limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in everything["items"]] == sorted(seen)
    assert len(seen) == everything["total"]
    second = await search(limit=2, page=2)
    assert [item["id"] for item in second["items"]] == seen[2:4] and second["page"] == 2


async def test_private_key_jwt_one_clock_rule_and_single_use_jti(client, world, settings):
    key = ec.generate_private_key(ec.SECP256R1())
    app = (
        await client.post(
            APPS,
            json=filing(department={}) | {"jwk": public_jwk(key.public_key())},
            headers=world.op(),
        )
    ).json()
    await go_live(client, world, app["id"])
    audience = settings.public_url.rstrip("/")
    now = int(time.time())

    def assertion(**claims: object) -> dict:
        base = {"iss": app["id"], "sub": app["id"], "aud": audience, "exp": now + 60}
        body = {**base, "jti": uuid.uuid4().hex, **claims}
        return bearer(jwt.encode({k: v for k, v in body.items() if v is not None}, key, "ES256"))

    good = assertion(jti="once")
    assert await check_identity(client, good) == 200
    replayed = await client.post("/department/v1/identity-checks", json=probe(), headers=good)
    assert replayed.status_code == 401 and replayed.json()["code"] == "invalid_credentials"
    for refused in (
        assertion(exp=None),  # exp is required
        assertion(jti=None),  # jti is required
        assertion(exp=now + 3700),  # lives longer than an hour
        assertion(iat=now - 100, exp=now + 3600),  # exp - iat over an hour
        assertion(exp=now - 60),  # expired beyond the leeway
        assertion(sub="someone-else"),
        assertion(aud="https://elsewhere.test"),
    ):
        assert await check_identity(client, refused) == 401
    assert await check_identity(client, assertion(aud=f"{audience}/oidc/token")) == 200
