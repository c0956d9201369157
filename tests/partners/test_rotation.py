"""Credential rotation with an overlap, for secrets and keys: the new one works at once, the older
ones until the overlap ends, a deleted one at once never again; every step audited."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.jwk import public_jwk
from ecard.partners.service import DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS
from tests.helpers import basic, bearer
from tests.partners.test_applications import APPS, check_identity, filing, go_live


async def test_secret_rotation_overlaps_then_ends(client, world):
    app = (await client.post(APPS, json=filing(department={}), headers=world.op())).json()
    await go_live(client, world, app["id"])
    first = app["client_secret"]
    creds = f"{APPS}/{app['id']}/credentials"

    rotated = await client.post(creds, json={"kind": "secret"}, headers=world.op())
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()["client_secret"]
    assert second.startswith("eccs_") and second != first
    assert rotated.json()["overlap_until"] >= int(time.time()) + DEFAULT_OVERLAP_SECONDS - 5
    for secret in (first, second):  # the overlap: both work
        assert await check_identity(client, basic(app["id"], secret)) == 200

    listed = (await client.get(creds, headers=world.op())).json()
    assert [c["state"] for c in listed] == ["overlap", "current"]
    assert all("secret" not in str(sorted(c)) and "digest" not in str(c) for c in listed)
    assert first not in str(listed) and second not in str(listed)

    short = await client.post(
        creds, json={"kind": "secret", "overlap_seconds": 1}, headers=world.op()
    )
    third = short.json()["client_secret"]
    assert await check_identity(client, basic(app["id"], second)) == 200
    await asyncio.sleep(1.2)
    for expired in (first, second):  # the overlap ended: refused
        response = await client.post(
            "/department/v1/identity-checks", json={}, headers=basic(app["id"], expired)
        )
        assert response.status_code == 401 and response.json()["code"] == "invalid_credentials"
    assert await check_identity(client, basic(app["id"], third)) == 200
    states = [c["state"] for c in (await client.get(creds, headers=world.op())).json()]
    assert states == ["ended", "ended", "current"]

    too_long = await client.post(
        creds,
        json={"kind": "secret", "overlap_seconds": MAX_OVERLAP_SECONDS + 1},
        headers=world.op(),
    )
    assert too_long.status_code == 400

    current = (await client.get(creds, headers=world.op())).json()[-1]["id"]
    ended = await client.delete(f"{creds}/{current}", headers=world.op())
    assert ended.status_code == 200 and ended.json()["state"] == "ended"
    assert await check_identity(client, basic(app["id"], third)) == 401  # at once
    again = await client.delete(f"{creds}/{current}", headers=world.op())
    assert again.status_code == 404 and again.json()["code"] == "credential_not_found"

    trail = await client.get(
        "/operator/v1/audit", params={"target_id": app["id"]}, headers=world.op("auditor")
    )
    actions = [e["action"] for e in trail.json()["items"]]
    assert actions.count("credential.add") == 2 and actions.count("credential.end") == 1
    for role in ("registry_admin", "auditor", "readonly"):
        assert (await client.get(creds, headers=world.op(role))).status_code == 403
        assert (
            await client.post(creds, json={"kind": "secret"}, headers=world.op(role))
        ).status_code == 403


async def test_key_rotation_overlaps_and_a_deleted_key_ends_at_once(client, world, settings):
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    app = (
        await client.post(
            APPS,
            json=filing(department={}) | {"jwk": public_jwk(old.public_key())},
            headers=world.op(),
        )
    ).json()
    await go_live(client, world, app["id"])
    creds = f"{APPS}/{app['id']}/credentials"

    def signed(key: ec.EllipticCurvePrivateKey) -> dict:
        claims = {
            "iss": app["id"],
            "sub": app["id"],
            "aud": settings.public_url.rstrip("/"),
            "exp": int(time.time()) + 60,
            "jti": uuid.uuid4().hex,
        }
        return bearer(jwt.encode(claims, key, "ES256"))

    assert await check_identity(client, signed(new)) == 401  # not filed yet
    private = {**public_jwk(new.public_key()), "d": "AAAA"}
    refused = await client.post(creds, json={"kind": "jwk", "jwk": private}, headers=world.op())
    assert refused.status_code == 400  # a private key is never filed
    added = await client.post(
        creds, json={"kind": "jwk", "jwk": public_jwk(new.public_key())}, headers=world.op()
    )
    assert added.status_code == 201 and "client_secret" not in added.json()
    for key in (old, new):
        assert await check_identity(client, signed(key)) == 200
    listed = (await client.get(creds, headers=world.op())).json()
    old_key = next(c for c in listed if c["kind"] == "jwk" and c["state"] == "overlap")
    assert old_key["public_jwk"]["x"] == public_jwk(old.public_key())["x"] and old_key["kid"]
    await client.delete(f"{creds}/{old_key['id']}", headers=world.op())
    assert await check_identity(client, signed(old)) == 401
    assert await check_identity(client, signed(new)) == 200
    # the secret it got at filing is untouched by a key rotation
    assert await check_identity(client, basic(app["id"], app["client_secret"])) == 200


async def test_a_filing_whose_stored_secret_is_damaged_cannot_be_entered(client, world):
    """A missing, empty or malformed stored digest (a damaged row, an import) fails closed: no
    password gets in, not even the placeholder compared against for unknown ids."""
    from ecard.partners import credentials
    from ecard.partners.tables import PartnerCredential

    app = (await client.post(APPS, json=filing(department={}), headers=world.op())).json()
    await go_live(client, world, app["id"])
    for stored in ("", None, "not-a-digest"):
        await PartnerCredential.update({PartnerCredential.secret_digest: stored}).where(
            PartnerCredential.application == app["id"]
        )
        credentials.forget(app["id"])  # as another worker would after its cache window
        for password in ("x" * 64, "x" * 43, "None", "not-a-digest", app["client_secret"]):
            assert await check_identity(client, basic(app["id"], password)) == 401
