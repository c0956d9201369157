"""The whole login as a relying party lives it, driven by Authlib (a standard OIDC client this
project did not write): discovery, PKCE, the holder's approval, code redemption, ID token
validation against the JWKS, userinfo, refresh, introspection, revocation and logout."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt as pyjwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.jose import JsonWebKey
from authlib.jose import jwt as authlib_jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from ecard.crypto.jwk import public_jwk
from tests.oidc.conftest import (
    APPROVAL,
    LOGOUT_URI,
    REDIRECT_URI,
    Holder,
    confirm_login,
    file_client,
)

ISSUER = "http://127.0.0.1:8000"
SCOPE = "openid profile ecard"


def relying_party(client, rp, **kwargs) -> AsyncOAuth2Client:
    options = {
        "client_id": rp.client_id,
        "client_secret": rp.client_secret,
        "scope": SCOPE,
        "redirect_uri": REDIRECT_URI,
        "code_challenge_method": "S256",
        "transport": httpx.ASGITransport(app=client.app),
        "base_url": ISSUER,
    }
    return AsyncOAuth2Client(**(options | kwargs))


async def scan_and_approve(client, url: str, holder: Holder) -> str:
    """The browser opens the authorization URL, the holder scans and approves; the callback URL."""
    parts = urlsplit(url)
    page = await client.get(
        f"{parts.path}?{parts.query}"
    )  # the test client's host keeps the cookie
    assert page.status_code == 200, page.text
    session_id = page.text.split('data-session="')[1].split('"')[0]
    assert (
        await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    ).status_code == 200
    assert (
        await client.post(
            f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
        )
    ).status_code == 200
    polled = await client.get(f"/oidc/login/{session_id}/poll", params={"wait": "false"})
    assert polled.json()["state"] == "approved_pending_confirmation"
    response = await confirm_login(client, session_id)  # the person at the browser: "是本人"
    assert response.status_code == 200
    return response.json()["location"]


def validate_id_token(id_token: str, jwks: dict, client_id: str, nonce: str | None) -> dict:
    claims = authlib_jwt.decode(
        id_token,
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": ISSUER}},
        claims_params={"nonce": nonce, "client_id": client_id},
    )
    claims.validate(leeway=5)
    return dict(claims)


async def test_a_standard_client_logs_in_refreshes_revokes_and_logs_out(client, world, rp, holder):
    async with relying_party(client, rp) as oauth:
        meta = (
            await oauth.request("GET", "/.well-known/openid-configuration", withhold_token=True)
        ).json()
        assert meta["issuer"] == ISSUER and meta["code_challenge_methods_supported"] == ["S256"]
        verifier, nonce = generate_token(64), generate_token(20)
        url, state = oauth.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )

        callback = await scan_and_approve(client, url, holder)
        returned = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        assert returned["state"] == state and returned["iss"] == ISSUER  # RFC 9207

        token = await oauth.fetch_token(
            meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        assert {"access_token", "id_token", "refresh_token"} <= set(token)
        jwks = (await oauth.request("GET", meta["jwks_uri"], withhold_token=True)).json()
        claims = validate_id_token(token["id_token"], jwks, rp.client_id, nonce)
        assert claims["acr"] == "urn:ecard:acr:scan-login:pwd" and "pwd" in claims["amr"]
        assert abs(claims["auth_time"] - time.time()) < 60
        assert pyjwt.get_unverified_header(token["id_token"])["alg"] == "ES256"

        userinfo = (await oauth.get(meta["userinfo_endpoint"])).json()
        assert userinfo["sub"] == claims["sub"]
        assert userinfo["name"] == "张*三"  # masked
        assert userinfo["card_status"] == "active" and userinfo["issuer_region"] == "330000"
        assert userinfo["ecard_pseudonym"] != holder.ecard_id

        first_refresh = token["refresh_token"]
        refreshed = await oauth.refresh_token(meta["token_endpoint"])
        assert refreshed["refresh_token"] != first_refresh
        refreshed_claims = validate_id_token(refreshed["id_token"], jwks, rp.client_id, None)
        assert refreshed_claims["sub"] == claims["sub"]
        assert (await oauth.get(meta["userinfo_endpoint"])).status_code == 200

        introspected = (
            await oauth.introspect_token(
                meta["introspection_endpoint"], token=refreshed["access_token"]
            )
        ).json()
        assert introspected["active"] and introspected["sub"] == claims["sub"]

        await oauth.revoke_token(
            meta["revocation_endpoint"],
            token=refreshed["access_token"],
            token_type_hint="access_token",
        )
        assert (await oauth.get(meta["userinfo_endpoint"])).status_code == 401
        assert not (
            await oauth.introspect_token(
                meta["introspection_endpoint"], token=refreshed["access_token"]
            )
        ).json()["active"]

        refreshed_again = await oauth.refresh_token(meta["token_endpoint"])
        logout = await client.get(
            meta["end_session_endpoint"],
            params={
                "id_token_hint": refreshed_again["id_token"],
                "post_logout_redirect_uri": LOGOUT_URI,
                "state": "bye",
            },
            follow_redirects=False,
        )
        assert logout.status_code == 303 and logout.headers["location"] == f"{LOGOUT_URI}?state=bye"
        assert (await oauth.get(meta["userinfo_endpoint"])).status_code == 401
        with pytest.raises(OAuthError, match="invalid_grant"):
            await oauth.refresh_token(meta["token_endpoint"])


async def test_revoking_a_refresh_token_ends_the_login(client, rp, holder):
    async with relying_party(client, rp) as oauth:
        verifier = generate_token(64)
        url, _ = oauth.create_authorization_url(
            f"{ISSUER}/oidc/authorize", code_verifier=verifier, nonce="n"
        )
        callback = await scan_and_approve(client, url, holder)
        token = await oauth.fetch_token(
            f"{ISSUER}/oidc/token", authorization_response=callback, code_verifier=verifier
        )
        await oauth.revoke_token(
            f"{ISSUER}/oidc/revoke", token=token["refresh_token"], token_type_hint="refresh_token"
        )
        assert (await oauth.get(f"{ISSUER}/oidc/userinfo")).status_code == 401
        with pytest.raises(OAuthError, match="invalid_grant"):
            await oauth.refresh_token(f"{ISSUER}/oidc/token")


async def test_every_filed_client_authentication_method_works(client, world, holder):
    for method in ("client_secret_post", "private_key_jwt", "none"):
        key = ec.generate_private_key(ec.SECP256R1())
        filing = {"token_endpoint_auth_method": method}
        if method == "private_key_jwt":
            filing["jwk"] = public_jwk(key.public_key())
        if method == "none":
            filing["client_type"] = "public"
        rp = await file_client(world, **filing)
        extra = {"token_endpoint_auth_method": method}
        if method == "private_key_jwt":
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            extra = {
                "token_endpoint_auth_method": PrivateKeyJWT(f"{ISSUER}/oidc/token", alg="ES256"),
                "client_secret": ECKey.import_key(pem),
            }
        async with relying_party(client, rp, **extra) as oauth:
            verifier = generate_token(64)
            url, _ = oauth.create_authorization_url(
                f"{ISSUER}/oidc/authorize", code_verifier=verifier, nonce="n"
            )
            callback = await scan_and_approve(client, url, holder)
            token = await oauth.fetch_token(
                f"{ISSUER}/oidc/token", authorization_response=callback, code_verifier=verifier
            )
            assert (await oauth.get(f"{ISSUER}/oidc/userinfo")).status_code == 200, method
            assert (await oauth.refresh_token(f"{ISSUER}/oidc/token"))["refresh_token"] != token[
                "refresh_token"
            ]


async def test_two_sites_see_different_subjects_for_the_same_person(client, world, holder):
    first = await file_client(world)
    second = await file_client(world, redirect_uris=["https://other.example.test/cb"])
    subjects = []
    for rp in (first, second):
        async with relying_party(client, rp, redirect_uri=rp.redirect_uri) as oauth:
            verifier = generate_token(64)
            url, _ = oauth.create_authorization_url(
                f"{ISSUER}/oidc/authorize", code_verifier=verifier
            )
            callback = await scan_and_approve(client, url, holder)
            await oauth.fetch_token(
                f"{ISSUER}/oidc/token", authorization_response=callback, code_verifier=verifier
            )
            info = (await oauth.get(f"{ISSUER}/oidc/userinfo")).json()
            subjects.append((info["sub"], info["ecard_pseudonym"]))
    assert subjects[0][0] != subjects[1][0] and subjects[0][1] != subjects[1][1]
    # … while the same site sees the same subject at every login
    async with relying_party(client, first) as oauth:
        verifier = generate_token(64)
        url, _ = oauth.create_authorization_url(f"{ISSUER}/oidc/authorize", code_verifier=verifier)
        callback = await scan_and_approve(client, url, holder)
        await oauth.fetch_token(
            f"{ISSUER}/oidc/token", authorization_response=callback, code_verifier=verifier
        )
        assert (await oauth.get(f"{ISSUER}/oidc/userinfo")).json()["sub"] == subjects[0][0]
