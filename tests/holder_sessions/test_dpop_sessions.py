"""Holder sessions bound to the phone's key (DPoP, RFC 9449), on both backends: a token copied off
the phone is worth nothing without the key, on the Litestar routes and on the hot code route."""

from __future__ import annotations

import msgspec
import pytest

from ecard.registry.tables import AuditEvent
from tests.helpers import World, basic, bearer, platform_of
from tests.holder_sessions.conftest import (
    Device,
    dpop_headers,
    issuance_body,
    issue,
    refresh,
    url_of,
)

#: The routes a holder calls with a token: the Litestar route of the e-card, the code route served
#: before Litestar's routing (RSGI/ASGI hot path) and its Litestar sibling (the QR image).
HOLDER_ROUTES = [
    ("GET", "/holder/v1/ecard"),
    ("POST", "/holder/v1/codes"),
    ("GET", "/holder/v1/codes/qr"),
]
OK = {"/holder/v1/ecard": 200, "/holder/v1/codes": 201, "/holder/v1/codes/qr": 200}


async def call(world: World, method: str, path: str, headers: dict) -> object:
    return await world.client.request(method, path, headers=headers)


async def test_a_bound_session_is_a_dpop_token_that_works_with_its_proof(world: World) -> None:
    phone = Device()
    issued = await issue(world, await world.person_with_card(), phone)
    session = issued["session"]
    assert session["token_type"] == "DPoP"
    for method, path in HOLDER_ROUTES:
        response = await call(
            world,
            method,
            path,
            dpop_headers(world.client, phone, method, path, session["access_token"]),
        )
        assert response.status_code == OK[path], (path, response.text)


async def test_an_ed25519_device_key_works_too(world: World) -> None:
    phone = Device("EdDSA")
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    response = await world.client.get(
        "/holder/v1/ecard",
        headers=dpop_headers(world.client, phone, "GET", "/holder/v1/ecard", token),
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path"), HOLDER_ROUTES)
async def test_a_bound_token_copied_to_another_device_is_refused(
    world: World, method: str, path: str
) -> None:
    phone, thief = Device(), Device()
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    as_bearer = await call(world, method, path, bearer(token))
    assert as_bearer.status_code == 401 and as_bearer.json()["code"] == "token_invalid"
    assert as_bearer.headers["www-authenticate"].startswith("DPoP ")
    without_proof = await call(world, method, path, {"Authorization": f"DPoP {token}"})
    assert without_proof.status_code == 401 and without_proof.json()["code"] == "invalid_dpop_proof"
    assert 'error="invalid_dpop_proof"' in without_proof.headers["www-authenticate"]
    other_key = await call(
        world, method, path, dpop_headers(world.client, thief, method, path, token)
    )
    assert other_key.status_code == 401 and other_key.json()["code"] == "invalid_dpop_proof"
    # the phone itself still gets in: the refusals ended nothing
    mine = await call(world, method, path, dpop_headers(world.client, phone, method, path, token))
    assert mine.status_code == OK[path], mine.text


@pytest.mark.parametrize(("method", "path"), HOLDER_ROUTES)
async def test_a_replayed_proof_is_refused(world: World, method: str, path: str) -> None:
    phone = Device()
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    headers = dpop_headers(world.client, phone, method, path, token)
    first = await call(world, method, path, headers)
    assert first.status_code == OK[path], first.text
    again = await call(world, method, path, headers)
    assert again.status_code == 401 and again.json()["code"] == "invalid_dpop_proof"
    assert "already used" in again.json()["detail"]


@pytest.mark.parametrize(
    "wrong",
    [
        {"htm": "PUT"},
        {"htu": "https://evil.example/holder/v1/codes"},
        {"htu": "/holder/v1/codes"},  # not absolute
        {"ath": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"ath": None},
        {"iat": 1_000_000_000},
        {"iat": 4_000_000_000 - 1},
        {"jti": None},
    ],
    ids=["htm", "htu-host", "htu-relative", "ath", "no-ath", "iat-old", "iat-future", "no-jti"],
)
async def test_a_proof_made_for_another_request_is_refused(world: World, wrong: dict) -> None:
    phone = Device()
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    for method, path in HOLDER_ROUTES[:2]:  # a Litestar route and the hot path
        response = await call(
            world, method, path, dpop_headers(world.client, phone, method, path, token, **wrong)
        )
        assert response.status_code == 401 and response.json()["code"] == "invalid_dpop_proof", (
            path,
            response.text,
        )


async def test_a_proof_for_another_path_or_with_two_headers_is_refused(world: World) -> None:
    phone = Device()
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    headers = dpop_headers(world.client, phone, "GET", "/holder/v1/ecard", token)
    other_path = await world.client.get("/holder/v1/sessions", headers=headers)
    assert other_path.status_code == 401 and other_path.json()["code"] == "invalid_dpop_proof"
    proof = phone.proof("POST", url_of(world.client, "/holder/v1/codes"), token)
    two = await world.client.post(
        "/holder/v1/codes",
        headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof), ("DPoP", proof)],
    )
    assert two.status_code == 401 and two.json()["code"] == "invalid_dpop_proof"


async def test_the_query_is_not_part_of_the_proofs_url(world: World) -> None:
    phone = Device()
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    headers = dpop_headers(world.client, phone, "GET", "/holder/v1/codes/qr", token)
    response = await world.client.get("/holder/v1/codes/qr?format=svg", headers=headers)
    assert response.status_code == 200, response.text


async def test_an_unbound_session_stays_a_bearer_token(world: World) -> None:
    issued = await world.issue(await world.person_with_card())
    session = issued["session"]
    assert session["token_type"] == "Bearer"
    assert (
        await world.client.post("/holder/v1/codes", headers=bearer(session["access_token"]))
    ).status_code == 201
    as_dpop = await world.client.get(
        "/holder/v1/ecard",
        headers=dpop_headers(
            world.client, Device(), "GET", "/holder/v1/ecard", session["access_token"]
        ),
    )
    assert as_dpop.status_code == 401 and as_dpop.json()["code"] == "token_invalid"
    refreshed = await refresh(world.client, session["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.json()["token_type"] == "Bearer"


async def test_refresh_of_a_bound_session_needs_a_proof_of_its_key(world: World) -> None:
    phone = Device()
    session = (await issue(world, await world.person_with_card(), phone))["session"]
    no_proof = await refresh(world.client, session["refresh_token"])
    assert no_proof.status_code == 401 and no_proof.json()["code"] == "invalid_dpop_proof"
    other_key = await refresh(world.client, session["refresh_token"], Device())
    assert other_key.status_code == 401 and other_key.json()["code"] == "invalid_dpop_proof"
    wrong_url = await refresh(
        world.client, session["refresh_token"], phone, htu=url_of(world.client, "/holder/v1/codes")
    )
    assert wrong_url.status_code == 401 and wrong_url.json()["code"] == "invalid_dpop_proof"
    # the refusals spent nothing: the phone refreshes, and stays bound
    refreshed = await refresh(world.client, session["refresh_token"], phone)
    assert refreshed.status_code == 200, refreshed.text
    tokens = refreshed.json()
    assert tokens["token_type"] == "DPoP"
    me = await world.client.get(
        "/holder/v1/ecard",
        headers=dpop_headers(
            world.client, phone, "GET", "/holder/v1/ecard", tokens["access_token"]
        ),
    )
    assert me.status_code == 200
    stolen = await world.client.get("/holder/v1/ecard", headers=bearer(tokens["access_token"]))
    assert stolen.status_code == 401
    reuse_rows = await AuditEvent.count().where(AuditEvent.action == "session.refresh_reuse")
    assert reuse_rows == 0


async def test_a_refresh_proof_is_used_once(world: World) -> None:
    phone = Device()
    session = (await issue(world, await world.person_with_card(), phone))["session"]
    proof = phone.proof("POST", url_of(world.client, "/holder/v1/session/refresh"))
    first = await world.client.post(
        "/holder/v1/session/refresh",
        json={"refresh_token": session["refresh_token"]},
        headers={"DPoP": proof},
    )
    assert first.status_code == 200, first.text
    replayed = await world.client.post(
        "/holder/v1/session/refresh",
        json={"refresh_token": first.json()["refresh_token"]},
        headers={"DPoP": proof},
    )
    assert replayed.status_code == 401 and replayed.json()["code"] == "invalid_dpop_proof"


async def test_required_policy_refuses_issuance_without_a_device_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = platform_of(world.client)
    monkeypatch.setattr(
        platform, "settings", msgspec.structs.replace(platform.settings, holder_dpop="required")
    )
    holder = await world.person_with_card()
    refused = await world.client.post(
        "/channel/v1/ecards",
        json=issuance_body(world, holder),
        headers=basic(world.channel["client_id"], world.channel["client_secret"]),
    )
    assert refused.status_code == 400 and refused.json()["code"] == "dpop_required"
    bound = await issue(world, holder, Device())
    assert bound["session"]["token_type"] == "DPoP"


async def test_a_malformed_thumbprint_is_a_validation_error(world: World) -> None:
    holder = await world.person_with_card()
    response = await world.client.post(
        "/channel/v1/ecards",
        json={
            **{k: holder[k] for k in ("name", "identity_number", "card_number")},
            "dpop_jkt": "not a thumbprint",
        },
        headers=basic(world.channel["client_id"], world.channel["client_secret"]),
    )
    assert response.status_code == 400 and response.json()["code"] == "validation_failed"


async def test_server_nonces_when_switched_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = platform_of(world.client)
    monkeypatch.setattr(
        platform, "settings", msgspec.structs.replace(platform.settings, holder_dpop_nonce=True)
    )
    phone = Device()
    token = (await issue(world, await world.person_with_card(), phone))["session"]["access_token"]
    for method, path in HOLDER_ROUTES[:2]:
        asked = await call(
            world, method, path, dpop_headers(world.client, phone, method, path, token)
        )
        assert asked.status_code == 401 and asked.json()["code"] == "use_dpop_nonce"
        assert asked.headers["www-authenticate"] == 'DPoP error="use_dpop_nonce"'
        nonce = asked.headers["dpop-nonce"]
        forged = await call(
            world,
            method,
            path,
            dpop_headers(world.client, phone, method, path, token, nonce="x" + nonce[1:]),
        )
        assert forged.status_code == 401 and forged.json()["code"] == "use_dpop_nonce"
        answered = await call(
            world, method, path, dpop_headers(world.client, phone, method, path, token, nonce=nonce)
        )
        assert answered.status_code == OK[path], answered.text
