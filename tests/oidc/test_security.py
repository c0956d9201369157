"""RFC 9700 rules, each tested with the attack it stops."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.jwk import public_jwk
from tests.helpers import platform_of
from tests.oidc.conftest import (
    APPROVAL,
    REDIRECT_URI,
    callback_params,
    confirm_login,
    file_client,
    login_code,
    pkce_pair,
    redeem,
    start_login,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login_tokens(client, rp, holder) -> dict:
    verifier, challenge = pkce_pair()
    params = await login_code(
        client, rp, holder, code_challenge=challenge, code_challenge_method="S256"
    )
    response = await redeem(client, rp, params["code"], code_verifier=verifier)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_replayed_code_is_refused_and_revokes_what_the_first_redemption_issued(
    client, rp, holder
):
    verifier, challenge = pkce_pair()
    params = await login_code(
        client, rp, holder, code_challenge=challenge, code_challenge_method="S256"
    )
    first = await redeem(client, rp, params["code"], code_verifier=verifier)
    assert first.status_code == 200
    replay = await redeem(client, rp, params["code"], code_verifier=verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert (
        await client.get("/oidc/userinfo", headers=bearer(first.json()["access_token"]))
    ).status_code == 401
    refresh = await client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        headers=rp.auth(),
    )
    assert refresh.json()["error"] == "invalid_grant"


async def test_a_code_stolen_by_another_client_is_useless(client, world, rp, holder):
    thief = await file_client(world)
    verifier, challenge = pkce_pair()
    params = await login_code(
        client, rp, holder, code_challenge=challenge, code_challenge_method="S256"
    )
    stolen = await redeem(client, thief, params["code"], code_verifier=verifier)
    assert stolen.json()["error"] == "invalid_grant"
    # and the attempt burnt the code: the rightful client cannot use it either
    assert (await redeem(client, rp, params["code"], code_verifier=verifier)).json()[
        "error"
    ] == "invalid_grant"


async def test_a_code_is_bound_to_its_redirect_uri(client, world, holder):
    rp = await file_client(world, redirect_uris=[REDIRECT_URI, "https://rp.example.test/other"])
    verifier, challenge = pkce_pair()
    params = await login_code(
        client, rp, holder, code_challenge=challenge, code_challenge_method="S256"
    )
    response = await client.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": "https://rp.example.test/other",
            "code_verifier": verifier,
        },
        headers=rp.auth(),
    )
    assert response.json()["error"] == "invalid_grant"


async def test_an_intercepted_code_without_the_pkce_verifier_is_useless(client, rp, holder):
    _, challenge = pkce_pair()
    for verifier in ("wrong" * 10, None, "short"):
        params = await login_code(
            client, rp, holder, code_challenge=challenge, code_challenge_method="S256"
        )
        form = {"code_verifier": verifier} if verifier else {}
        assert (await redeem(client, rp, params["code"], **form)).json()["error"] == "invalid_grant"


async def test_pkce_downgrade_is_refused(client, rp, holder):
    """A verifier sent for a code requested without a challenge means someone swapped codes."""
    params = await login_code(client, rp, holder)
    verifier, _ = pkce_pair()
    assert (await redeem(client, rp, params["code"], code_verifier=verifier)).json()[
        "error"
    ] == "invalid_grant"


async def test_public_clients_must_use_pkce_s256(client, world):
    public = await file_client(world, client_type="public", token_endpoint_auth_method="none")
    base = {
        "response_type": "code",
        "client_id": public.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s",
    }
    for extra in ({}, {"code_challenge": pkce_pair()[1], "code_challenge_method": "plain"}):
        response = await client.get("/oidc/authorize", params=base | extra)
        params = callback_params(response)
        assert params["error"] == "invalid_request" and params["state"] == "s" and params["iss"]


async def test_an_expired_code_is_refused(client, rp, holder, monkeypatch):
    monkeypatch.setenv("ECARD_OIDC_POLICY", json.dumps({"code_ttl": 1}))
    params = await login_code(client, rp, holder)
    await asyncio.sleep(1.2)
    assert (await redeem(client, rp, params["code"])).json()["error"] == "invalid_grant"


async def test_errors_about_the_client_or_redirect_uri_are_shown_never_redirected(client, rp):
    for change in (
        {"client_id": "rp_unknown"},
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/../evil"},
        {"redirect_uri": REDIRECT_URI + "?next=https://evil.example"},
        {"redirect_uri": None},
    ):
        query = {
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
        } | change
        response = await client.get(
            "/oidc/authorize", params={k: v for k, v in query.items() if v is not None}
        )
        assert response.status_code in (400, 401) and "location" not in response.headers, change
        assert response.headers["content-type"].startswith("text/html")


async def test_other_authorization_errors_go_back_to_the_client_with_state_and_iss(client, rp):
    base = {"client_id": rp.client_id, "redirect_uri": REDIRECT_URI, "state": "xyz"}
    cases = [
        ({"response_type": "token", "scope": "openid"}, "unsupported_response_type"),
        ({"response_type": "code", "scope": "openid email"}, "invalid_scope"),
        ({"response_type": "code", "scope": "profile"}, "invalid_scope"),
        ({"response_type": "code", "scope": "openid", "prompt": "none"}, "login_required"),
        (
            {"response_type": "code", "scope": "openid", "request": "eyJ..."},
            "request_not_supported",
        ),
    ]
    for extra, error in cases:
        params = callback_params(await client.get("/oidc/authorize", params=base | extra))
        assert params == {
            "error": error,
            "error_description": params["error_description"],
            "state": "xyz",
            "iss": "http://127.0.0.1:8000",
        }


async def test_repeated_parameters_are_refused(client, rp):
    url = f"/oidc/authorize?client_id={rp.client_id}&redirect_uri={REDIRECT_URI}&redirect_uri=https://evil.example/cb&response_type=code&scope=openid"
    response = await client.get(url)
    assert response.status_code == 400 and "location" not in response.headers


async def test_no_token_travels_in_a_url(client, rp, holder):
    verifier, challenge = pkce_pair()
    session_id = await start_login(
        client, rp, code_challenge=challenge, code_challenge_method="S256"
    )
    await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    params = callback_params(await confirm_login(client, session_id))
    assert set(params) == {"code", "state", "iss"}
    tokens = await redeem(client, rp, params["code"], code_verifier=verifier)
    assert tokens.headers["cache-control"] == "no-store"
    in_query = await client.get(
        "/oidc/userinfo", params={"access_token": tokens.json()["access_token"]}
    )
    assert in_query.status_code == 401


def _forged(claims: dict, alg: str, secret: bytes | None) -> str:
    """A token an attacker can make without our private key: unsigned, or HMAC-ed with a public
    key."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(claims).encode())
    signing_input = header + b"." + body
    signature = (
        b""
        if secret is None
        else jwt.utils.base64url_encode(hmac.new(secret, signing_input, hashlib.sha256).digest())
    )
    return (signing_input + b"." + signature).decode()


async def test_client_assertions_with_alg_none_or_hmac_keyed_with_the_public_key_are_refused(
    client, world, holder
):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key.public_key())
    rp = await file_client(world, token_endpoint_auth_method="private_key_jwt", jwk=jwk)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {
        "iss": rp.client_id,
        "sub": rp.client_id,
        "aud": "http://127.0.0.1:8000/oidc/token",
        "iat": now,
        "exp": now + 60,
        "jti": "j1",
    }
    params = await login_code(client, rp, holder)
    for alg, secret in (("none", None), ("HS256", pem), ("HS256", json.dumps(jwk).encode())):
        response = await client.post(
            "/oidc/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": REDIRECT_URI,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": _forged(claims, alg, secret),
            },
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", (
            alg,
            response.text,
        )
    good = jwt.encode(claims | {"jti": "j2"}, key, algorithm="ES256")
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT_URI,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": good,
    }
    assert (await client.post("/oidc/token", data=form)).status_code == 200
    replayed = await client.post("/oidc/token", data=form)
    assert replayed.json()["error"] == "invalid_client"  # single-use jti


async def test_a_forged_id_token_hint_cannot_log_anyone_out(client, rp, holder):
    tokens = await login_tokens(client, rp, holder)
    genuine = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    platform = platform_of(client)
    our_public = (
        platform.keys.ring.signing_key("330000")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for alg, secret in (("none", None), ("HS256", our_public)):
        forged = _forged(genuine, alg, secret)
        response = await client.get(
            "/oidc/logout", params={"id_token_hint": forged}, follow_redirects=False
        )
        assert response.status_code == 400 and "location" not in response.headers
    assert (
        await client.get("/oidc/userinfo", headers=bearer(tokens["access_token"]))
    ).status_code == 200


async def test_logout_never_redirects_to_an_unfiled_uri(client, rp, holder):
    tokens = await login_tokens(client, rp, holder)
    response = await client.get(
        "/oidc/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 400 and "location" not in response.headers


async def test_a_reused_refresh_token_revokes_the_whole_login(client, rp, holder):
    tokens = await login_tokens(client, rp, holder)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = await client.post("/oidc/token", data=form, headers=rp.auth())
    assert rotated.status_code == 200
    stolen_copy = await client.post("/oidc/token", data=form, headers=rp.auth())
    assert stolen_copy.json()["error"] == "invalid_grant"
    again = {"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]}
    assert (await client.post("/oidc/token", data=again, headers=rp.auth())).json()[
        "error"
    ] == "invalid_grant"
    assert (
        await client.get("/oidc/userinfo", headers=bearer(rotated.json()["access_token"]))
    ).status_code == 401


async def test_forged_refresh_tokens_do_not_touch_the_real_login(client, rp, holder):
    tokens = await login_tokens(client, rp, holder)
    family = tokens["refresh_token"].split(".")[0]
    for forged in (
        f"{family}.0.AAAA",
        f"{family}.5.{tokens['refresh_token'].split('.')[2]}",
        "garbage",
    ):
        response = await client.post(
            "/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": forged},
            headers=rp.auth(),
        )
        assert response.json()["error"] == "invalid_grant"
    rotated = await client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=rp.auth(),
    )
    assert rotated.status_code == 200


async def test_client_authentication_is_strict(client, world, rp, holder):
    params = await login_code(client, rp, holder)
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT_URI,
    }
    wrong_secret = await client.post(
        "/oidc/token",
        data=form,
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{rp.client_id}:nope".encode()).decode()
        },
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    other_method = await client.post(
        "/oidc/token", data=form | {"client_id": rp.client_id, "client_secret": rp.client_secret}
    )
    assert other_method.json()["error"] == "invalid_client"  # filed for client_secret_basic
    no_auth = await client.post("/oidc/token", data=form | {"client_id": rp.client_id})
    assert no_auth.json()["error"] == "invalid_client"


async def test_a_suspended_client_cannot_redeem_or_start_logins(client, world, rp, holder):
    params = await login_code(client, rp, holder)
    suspended = await client.post(
        f"/operator/v1/oidc/clients/{rp.client_id}/status",
        json={"status": "suspended"},
        headers=world.op(),
    )
    assert suspended.status_code == 200
    assert (await redeem(client, rp, params["code"])).json()["error"] == "client_not_live"
    page = await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
        },
    )
    assert page.status_code == 403 and "location" not in page.headers


async def test_login_sessions_and_token_requests_are_rate_limited(client, rp, monkeypatch):
    monkeypatch.setenv(
        "ECARD_OIDC_POLICY",
        json.dumps({"login_sessions_per_ip_minute": 3, "token_requests_per_ip_minute": 3}),
    )
    query = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
    }
    statuses = [(await client.get("/oidc/authorize", params=query)).status_code for _ in range(5)]
    assert statuses[:3] == [200] * 3 and statuses[3:] == [429, 429]
    form = {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI}
    answers = [await client.post("/oidc/token", data=form, headers=rp.auth()) for _ in range(5)]
    assert [a.status_code for a in answers[3:]] == [429, 429]
    refused = answers[-1].json()  # OAuth clients read error; everyone reads Retry-After
    assert (
        refused["error"] == refused["code"] == "temporarily_unavailable"
        and int(answers[-1].headers["retry-after"]) >= 1
    )


async def test_every_login_and_refusal_is_audited(client, world, rp, holder):
    params = await login_code(client, rp, holder)
    await redeem(client, rp, params["code"])
    await redeem(client, rp, params["code"])  # replay
    await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": "https://evil.example/cb",
            "scope": "openid",
        },
    )
    trail = await client.get(
        "/operator/v1/audit",
        params={"target_id": rp.client_id, "limit": 50},
        headers=world.op("auditor"),
    )
    actions = [event["action"] for event in trail.json()["items"]]
    assert {"oidc.login.approve", "oidc.code.refused", "oidc.authorize.refused"} <= set(actions)
    assert all(
        holder.ecard_id != event["actor_id"] or event["action"].startswith("oidc.login")
        for event in trail.json()["items"]
    )


async def test_a_suspended_clients_tokens_stop_working(client, world, rp, holder):
    tokens = await login_tokens(client, rp, holder)
    await client.post(
        f"/operator/v1/oidc/clients/{rp.client_id}/status",
        json={"status": "suspended"},
        headers=world.op(),
    )
    assert (
        await client.get("/oidc/userinfo", headers=bearer(tokens["access_token"]))
    ).status_code == 401


async def test_a_client_cannot_read_or_revoke_another_clients_tokens(client, world, rp, holder):
    tokens = await login_tokens(client, rp, holder)
    other = await file_client(world)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        seen = await client.post("/oidc/introspect", data={"token": token}, headers=other.auth())
        assert seen.status_code == 200 and seen.json() == {"active": False}
        assert (
            await client.post("/oidc/revoke", data={"token": token}, headers=other.auth())
        ).status_code == 200
    assert (
        await client.get("/oidc/userinfo", headers=bearer(tokens["access_token"]))
    ).status_code == 200
    still = await client.post(
        "/oidc/introspect", data={"token": tokens["refresh_token"]}, headers=rp.auth()
    )
    assert still.json()["active"] and still.json()["token_type"] == "refresh_token"


async def test_junk_gets_a_clear_oauth_error_never_a_crash(client, rp, holder):
    """Whatever a client sends, the OAuth endpoints answer with an RFC 6749 error document."""
    junk_bodies = [
        {
            "content": b"\xff\xfe\x00garbage",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        {
            "content": b'{"grant_type": "authorization_code"}',
            "headers": {"content-type": "application/json"},
        },
        {"content": b"grant_type=authorization_code&grant_type=refresh_token"},
        {"content": b"grant_type=" + b"x" * 5000},
        {"content": b"", "headers": {"authorization": "Basic %%%"}},
        {
            "content": b"",
            "headers": {"authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        },
    ]
    for path in ("/oidc/token", "/oidc/revoke", "/oidc/introspect", "/oidc/device_authorization"):
        for body in junk_bodies:
            headers = {
                "content-type": "application/x-www-form-urlencoded",
                **body.get("headers", {}),
            }
            response = await client.post(path, content=body["content"], headers=headers)
            assert 400 <= response.status_code < 500, (path, body, response.text)
            assert response.json()["error"], (path, body, response.text)
    for token in ("", "ecat_" + "x" * 40, "x" * 5000, "ecat_\u00e9"):
        response = await client.get(
            "/oidc/userinfo", headers={"authorization": f"Bearer {token}".encode()}
        )
        assert response.status_code in (400, 401) and response.json()["error"] in (
            "invalid_token",
            "invalid_request",
        )
    for path in (
        "/oidc/login/{}/poll",
        "/oidc/login/{}/qr.svg",
        "/oidc/login/{}/continue",
        "/holder/v1/logins/{}",
    ):
        response = await client.get(path.format("z" * 3000), headers=holder.headers())
        assert response.status_code == 404, (path, response.text)
    for hint in ("", "a.b.c", "e30." * 3, "x" * 5000):
        response = await client.get(
            "/oidc/logout", params={"id_token_hint": hint}, follow_redirects=False
        )
        assert response.status_code == 400 and "location" not in response.headers


async def test_a_client_without_a_stored_secret_cannot_be_entered_with_any_password(client, rp):
    """A confidential client whose secret digest is missing or empty (a damaged row, an import)
    fails closed: not even the placeholder the check compares unknown clients against gets in."""
    from ecard.partners import credentials
    from ecard.partners.tables import PartnerCredential

    for stored in ("", None):
        await PartnerCredential.update({PartnerCredential.secret_digest: stored}).where(
            PartnerCredential.application == rp.client_id
        )
        credentials.forget(rp.client_id)  # as another worker would after its cache window
        for password in ("x" * 43, "x" * 64, ""):
            response = await client.post(
                "/oidc/token",
                auth=(rp.client_id, password),
                data={
                    "grant_type": "authorization_code",
                    "code": "c",
                    "redirect_uri": REDIRECT_URI,
                },
            )
            assert response.status_code == 401, (stored, password, response.text)
            assert response.json()["error"] == "invalid_client"
