"""E-card issuance (签发), holder sessions, and the real-person-card check (核验)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import msgspec

from ecard.auth import REVOCATION_CLOCK_MARGIN, HolderAccess, holder_access_token
from ecard.registry.tables import HolderSession
from ecard.store.ephemeral import StoreUnavailable
from tests.helpers import World, basic, bearer, platform_of


async def test_matching_details_issue_an_ecard_and_a_holder_session(world: World) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    assert issued["ecard"]["status"] == "active"
    assert issued["ecard"]["holder_name"] == "张*三"
    assert holder["identity_number"] not in str(issued)
    me = await world.client.get(
        "/holder/v1/ecard", headers=bearer(issued["session"]["access_token"])
    )
    assert me.status_code == 200 and me.json()["id"] == issued["ecard"]["id"]


async def test_mismatched_details_are_refused_without_saying_which_field(world: World) -> None:
    holder = await world.person_with_card()
    other = await world.person_with_card(name="李四")
    for attempt in (
        {**holder, "name": "张小四"},
        {**holder, "card_number": other["card_number"]},
        {**holder, "identity_number": other["identity_number"]},
    ):
        response = await world.client.post(
            "/channel/v1/ecards",
            json={k: attempt[k] for k in ("name", "identity_number", "card_number")},
            headers=basic(world.channel["client_id"], world.channel["client_secret"]),
        )
        assert response.status_code == 403 and response.json()["code"] == "identity_mismatch"


async def test_wrong_channel_secrets_and_wrong_kinds_are_refused(world: World) -> None:
    holder = await world.person_with_card()
    body = {k: holder[k] for k in ("name", "identity_number", "card_number")}
    wrong = await world.client.post(
        "/channel/v1/ecards", json=body, headers=basic(world.channel["client_id"], "eccs_wrong")
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"
    unknown = await world.client.post(
        "/channel/v1/ecards", json=body, headers=basic("ch_nobody", "eccs_wrong")
    )
    assert unknown.status_code == 401
    department = await world.client.post(
        "/channel/v1/ecards",
        json=body,
        headers=basic(world.department["client_id"], world.department["client_secret"]),
    )
    assert department.status_code == 403


async def test_a_card_reported_lost_disables_every_ecard_and_session_at_once(world: World) -> None:
    holder = await world.person_with_card()
    second_channel = await world.new_client("channel")
    sessions = [
        (await world.issue(holder))["session"],
        (await world.issue(holder, second_channel))["session"],
    ]
    lost = await world.client.post(
        f"/operator/v1/cards/{holder['card_id']}/status",
        json={"status": "lost", "reason": "挂失"},
        headers=world.op(),
    )
    assert lost.status_code == 200
    for session in sessions:
        response = await world.client.get(
            "/holder/v1/ecard", headers=bearer(session["access_token"])
        )
        assert response.status_code == 401 and response.json()["code"] == "token_invalid"
        refresh = await world.client.post(
            "/holder/v1/session/refresh", json={"refresh_token": session["refresh_token"]}
        )
        # suspended with the card, not ended: no false reuse alarm (tests/holder_sessions)
        assert refresh.status_code == 403 and refresh.json()["code"] == "card_not_active"
    refused = await world.client.post(
        "/channel/v1/ecards",
        json={k: holder[k] for k in ("name", "identity_number", "card_number")},
        headers=basic(world.channel["client_id"], world.channel["client_secret"]),
    )
    assert refused.status_code == 403 and refused.json()["code"] == "card_not_active"


async def test_unbinding_one_ecard_leaves_the_holders_other_channels(world: World) -> None:
    holder = await world.person_with_card()
    second_channel = await world.new_client("channel")
    first = await world.issue(holder)
    second = await world.issue(holder, second_channel)
    unbound = await world.client.post(
        "/holder/v1/ecard/unbind", headers=bearer(first["session"]["access_token"])
    )
    assert unbound.status_code == 200 and unbound.json()["status"] == "unbound"
    gone = await world.client.get(
        "/holder/v1/ecard", headers=bearer(first["session"]["access_token"])
    )
    assert gone.status_code == 401
    still = await world.client.get(
        "/holder/v1/ecard", headers=bearer(second["session"]["access_token"])
    )
    assert still.status_code == 200 and still.json()["id"] == second["ecard"]["id"]


async def test_a_channel_cannot_unbind_another_channels_ecard(world: World) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    intruder = await world.new_client("channel")
    response = await world.client.post(
        f"/channel/v1/ecards/{issued['ecard']['id']}/unbind",
        headers=basic(intruder["client_id"], intruder["client_secret"]),
    )
    assert response.status_code == 404


async def test_refresh_rotates_and_reuse_revokes_the_session(world: World) -> None:
    holder = await world.person_with_card()
    session = (await world.issue(holder))["session"]
    rotated = await world.client.post(
        "/holder/v1/session/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert rotated.status_code == 200
    new = rotated.json()
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(session["access_token"]))
    ).status_code == 401
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(new["access_token"]))
    ).status_code == 200
    replay = await world.client.post(
        "/holder/v1/session/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert replay.status_code == 401
    # the thief's replay ended the legitimate session too
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(new["access_token"]))
    ).status_code == 401


async def test_logout_ends_the_session(world: World) -> None:
    holder = await world.person_with_card()
    session = (await world.issue(holder))["session"]
    assert (
        await world.client.post(
            "/holder/v1/session/logout", headers=bearer(session["access_token"])
        )
    ).status_code == 204
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(session["access_token"]))
    ).status_code == 401


async def test_identity_check_answers_yes_or_no_and_the_status_nothing_more(world: World) -> None:
    holder = await world.person_with_card()
    dept = basic(world.department["client_id"], world.department["client_secret"])
    body = {k: holder[k] for k in ("name", "identity_number", "card_number")}
    yes = await world.client.post("/department/v1/identity-checks", json=body, headers=dept)
    assert yes.status_code == 200 and yes.json() == {"match": True, "card_status": "active"}
    no = await world.client.post(
        "/department/v1/identity-checks", json={**body, "name": "李四"}, headers=dept
    )
    assert no.json() == {"match": False}
    channel = await world.client.post(
        "/department/v1/identity-checks",
        json=body,
        headers=basic(world.channel["client_id"], world.channel["client_secret"]),
    )
    assert channel.status_code == 403
    trail = await world.client.get(
        "/operator/v1/audit", params={"action": "identity.check"}, headers=world.op("auditor")
    )
    assert trail.json()["total"] == 2


async def test_disabled_clients_are_refused(world: World) -> None:
    holder = await world.person_with_card()
    await world.client.post(
        f"/operator/v1/clients/{world.channel['client_id']}/status",
        json={"status": "disabled", "reason": "contract ended"},
        headers=world.op(),
    )
    response = await world.client.post(
        "/channel/v1/ecards",
        json={k: holder[k] for k in ("name", "identity_number", "card_number")},
        headers=basic(world.channel["client_id"], world.channel["client_secret"]),
    )
    assert response.status_code == 403


async def test_a_channel_can_authenticate_with_a_private_key_jwt_once(world: World) -> None:
    import time
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from ecard.crypto.jwk import public_jwk

    key = ec.generate_private_key(ec.SECP256R1())
    channel = await world.new_client("channel", public_jwk=public_jwk(key.public_key()))
    holder = await world.person_with_card()
    audience = platform_of(world.client).settings.public_url
    now = int(time.time())
    claims = {
        "iss": channel["client_id"],
        "sub": channel["client_id"],
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode(claims, key, algorithm="ES256")
    body = {k: holder[k] for k in ("name", "identity_number", "card_number")}
    body["evidence"] = world.evidence_for(
        holder, {**channel, "private_key_pem": key}
    )  # the same key signs its 实人 evidence
    first = await world.client.post("/channel/v1/ecards", json=body, headers=bearer(assertion))
    assert first.status_code == 201, first.text
    replay = await world.client.post("/channel/v1/ecards", json=body, headers=bearer(assertion))
    assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
    forged = jwt.encode(
        {**claims, "jti": uuid.uuid4().hex},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
    )
    assert (
        await world.client.post("/channel/v1/ecards", json=body, headers=bearer(forged))
    ).status_code == 401
    hmac_with_public_key = jwt.encode(
        {**claims, "jti": uuid.uuid4().hex}, "not-a-key", algorithm="HS256"
    )
    assert (
        await world.client.post(
            "/channel/v1/ecards", json=body, headers=bearer(hmac_with_public_key)
        )
    ).status_code == 401


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


async def test_forged_tampered_expired_and_pre_flush_access_tokens_are_refused(
    world: World,
) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    token = issued["session"]["access_token"]
    platform = platform_of(world.client)
    body, tag = token.removeprefix("echa_").split(".")
    raw_body = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    claims = msgspec.msgpack.decode(raw_body, type=HolderAccess)
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    other_key = hmac.new(b"another platform's key".ljust(32), raw_body, hashlib.sha256).digest()[
        :16
    ]
    refused = {
        "forged": "echa_forged",
        "tampered body": f"echa_{flipped}.{tag}",
        "tampered tag": f"echa_{body}." + ("B" if tag[0] == "A" else "A") + tag[1:],
        # 16 bytes take 22 characters: the last one's 4 low bits are spare, so this decodes the same
        "same bytes, other spelling": f"echa_{body}.{tag[:-1]}" + B64URL[B64URL.index(tag[-1]) ^ 1],
        "not base64": f"echa_{body}!.{tag}",
        "another key's MAC": f"echa_{body}."
        + base64.urlsafe_b64encode(other_key).rstrip(b"=").decode(),
        "expired": holder_access_token(
            platform, msgspec.structs.replace(claims, expires_at=int(time.time()) - 1)
        ),
    }
    for case, forged in refused.items():
        response = await world.client.get("/holder/v1/ecard", headers=bearer(forged))
        assert response.status_code == 401, case
        assert response.json()["code"] == "token_invalid", case
    assert (await world.client.get("/holder/v1/ecard", headers=bearer(token))).status_code == 200


async def test_a_token_older_than_the_store_is_checked_against_the_database(world: World) -> None:
    """After a flush (or, in process, a restart) revocations may be lost: the database decides."""
    session = (await world.issue(await world.person_with_card()))["session"]
    platform = platform_of(world.client)
    body = session["access_token"].removeprefix("echa_").split(".")[0]
    claims = msgspec.msgpack.decode(
        base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), type=HolderAccess
    )
    before_store = msgspec.structs.replace(
        claims, issued_at=await platform.store.store_started_at() - 1
    )
    old_token = holder_access_token(platform, before_store)
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(old_token))
    ).status_code == 200
    await HolderSession.update({HolderSession.revoked: True}).where(
        HolderSession.id == claims.session_id
    )
    refused = await world.client.get("/holder/v1/ecard", headers=bearer(old_token))
    assert refused.status_code == 401 and refused.json()["code"] == "token_invalid"


async def test_a_card_found_again_takes_new_sessions_but_not_the_old_ones(world: World) -> None:
    holder = await world.person_with_card()
    old = (await world.issue(holder))["session"]
    for status in ("lost", "active"):
        changed = await world.client.post(
            f"/operator/v1/cards/{holder['card_id']}/status",
            json={"status": status, "reason": status},
            headers=world.op(),
        )
        assert changed.status_code == 200, changed.text
    await asyncio.sleep(
        REVOCATION_CLOCK_MARGIN
    )  # a revocation also covers tokens minted just after it
    new = (await world.issue(holder))["session"]
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(new["access_token"]))
    ).status_code == 200
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(old["access_token"]))
    ).status_code == 401


async def test_while_the_store_is_away_the_database_decides(world: World, monkeypatch) -> None:
    """A revocation reaches the store before the database, so nothing is revoked while the store
    is away: holders keep fetching codes (offline verifiers can still check them)."""
    session = (await world.issue(await world.person_with_card()))["session"]
    platform = platform_of(world.client)

    async def away(keys: list[str], issued_at: float) -> None:
        raise StoreUnavailable("Redis is unavailable (test)")

    monkeypatch.setattr(platform.store, "check_revocation", away)
    assert (
        await world.client.post("/holder/v1/codes", headers=bearer(session["access_token"]))
    ).status_code == 201
    claims = msgspec.msgpack.decode(
        base64.urlsafe_b64decode(session["access_token"][5:].split(".")[0] + "=="),
        type=HolderAccess,
    )
    await HolderSession.update({HolderSession.revoked: True}).where(
        HolderSession.id == claims.session_id
    )
    refused = await world.client.post("/holder/v1/codes", headers=bearer(session["access_token"]))
    assert refused.status_code == 401 and refused.json()["code"] == "token_invalid"
