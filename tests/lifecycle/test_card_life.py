"""The card's life a holder actually lives through, over HTTP on both backends: 临时挂失 in the
app and its undo with the password, lapse, formal loss, 补领 with the e-card id kept, expiry."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid

import httpx

from ecard.auth import REVOCATION_CLOCK_MARGIN
from ecard.registry.card_life import CardLifeService
from ecard.registry.tables import AuditEvent, Card, ECard
from ecard.terminal.tables import HceCertificate
from ecard.webhooks.tables import WebhookDelivery
from tests.helpers import HOLDER_PASSWORD, World, basic, bearer, platform_of


async def _verifier(world: World) -> dict[str, str]:
    return await world.new_client("verifier", entitlements=["masked_name", "card_status"])


async def _code(client: httpx.AsyncClient, access: str) -> httpx.Response:
    return await client.post("/holder/v1/codes", headers=bearer(access))


async def _verify(client: httpx.AsyncClient, verifier: dict[str, str], code: str) -> dict:
    response = await client.post(
        "/verifier/v1/verifications",
        json={"code": code},
        headers=basic(verifier["client_id"], verifier["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _refresh(client: httpx.AsyncClient, refresh: str) -> httpx.Response:
    return await client.post("/holder/v1/session/refresh", json={"refresh_token": refresh})


async def _status(world: World, card_id: str, status: str, reason: str = "test") -> httpx.Response:
    return await world.client.post(
        f"/operator/v1/cards/{card_id}/status",
        json={"status": status, "reason": reason},
        headers=world.op(),
    )


def _new_card_body() -> dict[str, str]:
    return {
        "card_number": "R" + uuid.uuid4().hex[:10].upper(),
        "chip_serial": uuid.uuid4().hex[:16].upper(),
        "identification_code": uuid.uuid4().hex[:24].upper(),
        "issue_date": "2026-12-01",
        "expiry_date": "2036-12-01",
    }


async def test_a_temporary_loss_in_the_app_stops_everything_and_the_password_undoes_it(
    client: httpx.AsyncClient, world: World
) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    access, refresh = issued["session"]["access_token"], issued["session"]["refresh_token"]
    verifier = await _verifier(world)
    before = (await _code(client, access)).json()["code"]

    reported = await client.post("/holder/v1/card/loss-report", headers=bearer(access))
    assert reported.status_code == 200, reported.text
    assert reported.json()["card_status"] == "lost_temporary"
    assert reported.json()["lapses_at"] > time.time() + 6 * 86_400  # the default period: 7 days

    assert (await _code(client, access)).status_code == 401  # the access token ended with the loss
    assert (await _verify(client, verifier, before))["valid"] is False
    refused = await _refresh(client, refresh)
    assert refused.status_code == 403 and refused.json()["code"] == "card_not_active"
    reuse = await AuditEvent.count().where(AuditEvent.action == "session.refresh_reuse")
    assert reuse == 0  # a suspended session is not a stolen refresh token

    # a withdrawal covers codes of whole seconds up to a second after it (its clock margin)
    await asyncio.sleep(REVOCATION_CLOCK_MARGIN + 1.0)
    wrong = await client.post(
        "/holder/v1/card/loss-report/undo", json={"refresh_token": refresh, "password": "000111"}
    )
    assert wrong.status_code in (401, 403) and wrong.json()["code"] == "password_invalid"
    forged = await client.post(
        "/holder/v1/card/loss-report/undo",
        json={"refresh_token": "echr_" + "x" * 40, "password": HOLDER_PASSWORD},
    )
    assert forged.status_code == 401
    undone = await client.post(
        "/holder/v1/card/loss-report/undo",
        json={"refresh_token": refresh, "password": HOLDER_PASSWORD},
    )
    assert undone.status_code == 200, undone.text
    assert undone.json()["card_status"] == "active"

    renewed = await _refresh(client, refresh)  # the same session continues
    assert renewed.status_code == 200, renewed.text
    fresh = (await _code(client, renewed.json()["access_token"])).json()["code"]
    result = await _verify(client, verifier, fresh)
    assert result["valid"] is True, result
    history = await client.get(
        f"/operator/v1/cards/{holder['card_id']}/history", headers=world.op()
    )
    assert [e["to_status"] for e in history.json()] == ["active", "lost_temporary", "active"]


async def test_a_temporary_loss_lapses_by_itself_and_a_formal_one_needs_an_outlet(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    access, refresh = issued["session"]["access_token"], issued["session"]["refresh_token"]
    await client.post("/holder/v1/card/loss-report", headers=bearer(access))
    life = CardLifeService(platform)
    assert await life.lapse_temporary_losses(now=time.time() + 3600) == 0  # not yet
    assert await life.lapse_temporary_losses(now=time.time() + 8 * 86_400) == 1
    assert (await Card.select(Card.status).where(Card.id == holder["card_id"]).first())[
        "status"
    ] == "active"
    assert (await _refresh(client, refresh)).status_code == 200

    other = await world.person_with_card()
    other_session = (await world.issue(other))["session"]
    await client.post("/holder/v1/card/loss-report", headers=bearer(other_session["access_token"]))
    assert (
        await _status(world, other["card_id"], "lost", "正式挂失 at the outlet")
    ).status_code == 200
    formal = await client.post(
        "/holder/v1/card/loss-report/undo",
        json={"refresh_token": other_session["refresh_token"], "password": HOLDER_PASSWORD},
    )
    assert formal.status_code == 409 and formal.json()["code"] == "loss_is_formal"
    assert (
        await life.lapse_temporary_losses(now=time.time() + 30 * 86_400) == 0
    )  # formal losses never lapse


async def test_replacement_keeps_the_ecard_id_and_kills_everything_of_the_old_card(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    ecard_id = issued["ecard"]["id"]
    access, refresh = issued["session"]["access_token"], issued["session"]["refresh_token"]
    webhook = await client.put(
        f"/operator/v1/clients/{world.channel['client_id']}/webhook",
        json={"url": "https://channel.example/hooks"},
        headers=world.op(),
    )
    assert webhook.status_code == 201, webhook.text
    verifier = await _verifier(world)
    old_code = (await _code(client, access)).json()["code"]
    old_card = holder["card_id"]

    assert (await _status(world, old_card, "lost", "正式挂失")).status_code == 200
    premature = await client.post(
        f"/operator/v1/cards/{old_card}/replace",
        json={"new_card": _new_card_body()},
        headers=world.op(),
    )
    assert premature.status_code == 409 and premature.json()["code"] == "replacement_not_requested"
    requested = await client.post(
        f"/operator/v1/cards/{old_card}/replacement-request",
        json={"reason": "lost"},
        headers=world.op(),
    )
    assert requested.status_code == 200 and requested.json()["status"] == "replacement_pending"
    no_unlock = await _status(world, old_card, "active", "解挂")
    assert no_unlock.status_code == 409 and no_unlock.json()["code"] == "invalid_status_transition"
    both = await client.post(
        f"/operator/v1/cards/{old_card}/replace",
        json={"new_card": _new_card_body(), "stock_card_id": "x"},
        headers=world.op(),
    )
    assert both.status_code == 400

    done = await client.post(
        f"/operator/v1/cards/{old_card}/replace",
        json={"new_card": _new_card_body()},
        headers=world.op(),
    )
    assert done.status_code == 201, done.text
    new_card = done.json()["new_card_id"]
    assert done.json()["ecards_moved"] == 1

    old_row = await Card.select().where(Card.id == old_card).first()
    assert old_row["status"] == "replaced" and old_row["replaced_by"] == new_card
    assert (await Card.select(Card.replaces).where(Card.id == new_card).first())[
        "replaces"
    ] == old_card
    assert (await ECard.select(ECard.card).where(ECard.id == ecard_id).first())["card"] == new_card
    assert (await _verify(client, verifier, old_code))["valid"] is False

    renewed = await _refresh(client, refresh)  # the holder's session continues on the new card
    assert renewed.status_code == 200, renewed.text
    mine = await client.get("/holder/v1/ecard", headers=bearer(renewed.json()["access_token"]))
    assert mine.json()["id"] == ecard_id and mine.json()["status"] == "active"
    new_code = (await _code(client, renewed.json()["access_token"])).json()["code"]
    assert (await _verify(client, verifier, new_code))["valid"] is True

    deliveries = await WebhookDelivery.select().where(
        WebhookDelivery.client == world.channel["client_id"]
    )
    kinds = [d["event_type"] for d in deliveries]
    assert "card.replaced" in kinds and "card.status_changed" in kinds
    for delivery in deliveries:
        text = json.dumps(delivery["payload"], ensure_ascii=False)
        for secret in (holder["name"], holder["identity_number"], holder["card_number"]):
            assert secret not in text
    replaced = next(d for d in deliveries if d["event_type"] == "card.replaced")
    payload = (
        replaced["payload"]
        if isinstance(replaced["payload"], dict)
        else json.loads(replaced["payload"])
    )
    assert payload["data"]["ecard_id"] == ecard_id
    assert await CardLifeService(platform).lapse_temporary_losses() == 0
    again = await client.post(
        f"/operator/v1/cards/{old_card}/replace",
        json={"new_card": _new_card_body()},
        headers=world.op(),
    )
    assert again.status_code == 409  # replaced is final


async def test_hce_certificates_die_with_the_replaced_card(
    client: httpx.AsyncClient, world: World
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from ecard.crypto.jwk import public_jwk

    holder = await world.person_with_card()
    access = (await world.issue(holder))["session"]["access_token"]
    device = ec.generate_private_key(ec.SECP256R1())
    provisioned = await client.post(
        "/holder/v1/hce-certificates",
        json={"device_key": public_jwk(device.public_key())},
        headers=bearer(access),
    )
    assert provisioned.status_code == 201, provisioned.text
    await _status(world, holder["card_id"], "lost")
    await client.post(
        f"/operator/v1/cards/{holder['card_id']}/replacement-request",
        json={"reason": "lost"},
        headers=world.op(),
    )
    done = await client.post(
        f"/operator/v1/cards/{holder['card_id']}/replace",
        json={"new_card": _new_card_body()},
        headers=world.op(),
    )
    assert done.json()["hce_certificates_revoked"] == 1
    rows = await HceCertificate.select(HceCertificate.revoked_at).where(
        HceCertificate.card == holder["card_id"]
    )
    assert all(r["revoked_at"] is not None for r in rows)


async def test_issuance_refuses_an_expired_card(client: httpx.AsyncClient, world: World) -> None:
    holder = await world.person_with_card()
    await Card.update({Card.expiry_date: dt.date.today() - dt.timedelta(days=1)}).where(
        Card.id == holder["card_id"]
    )
    response = await client.post(
        "/channel/v1/ecards",
        json={
            **{k: holder[k] for k in ("name", "identity_number", "card_number")},
            "evidence": world.evidence_for(holder),
        },
        headers=basic(world.channel["client_id"], world.channel["client_secret"]),
    )
    assert response.status_code == 403 and response.json()["code"] == "card_expired"


async def test_cancelling_or_a_death_ends_the_ecards_and_their_sessions(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    assert (await _status(world, holder["card_id"], "deceased", "death record")).status_code == 200
    row = await ECard.select(ECard.status).where(ECard.id == issued["ecard"]["id"]).first()
    assert row["status"] == "ended"
    refused = await _refresh(client, issued["session"]["refresh_token"])
    assert refused.status_code in (401, 403)
    assert await AuditEvent.count().where(AuditEvent.action == "session.refresh_reuse") == 0
    second = await world.person_with_card()
    await world.issue(second)
    ended = await CardLifeService(platform).record_death(
        second["person_id"], dt.date.today(), "operator:test", "record"
    )
    assert ended == [second["card_id"]]
    assert (
        await CardLifeService(platform).record_death(
            second["person_id"], dt.date.today(), "operator:test", "again"
        )
        == []
    )


async def test_a_holder_cannot_reach_operator_moves(
    client: httpx.AsyncClient, world: World
) -> None:
    holder = await world.person_with_card()
    access = (await world.issue(holder))["session"]["access_token"]
    assert (
        await client.post(
            f"/operator/v1/cards/{holder['card_id']}/replacement-request",
            json={"reason": "lost"},
            headers=bearer(access),
        )
    ).status_code == 401
    await client.post("/holder/v1/card/loss-report", headers=bearer(access))
    twice = await client.post("/holder/v1/card/loss-report", headers=bearer(access))
    assert twice.status_code == 401  # the token ended with the first report


async def test_a_province_that_suspends_expired_cards_refuses_their_codes_and_refresh(
    client: httpx.AsyncClient, world: World
) -> None:
    import msgspec

    from ecard.settings import CardPolicy

    platform = platform_of(client)
    holder = await world.person_with_card()
    session = (await world.issue(holder))["session"]
    verifier = await _verifier(world)
    code = (await _code(client, session["access_token"])).json()["code"]
    await Card.update({Card.expiry_date: dt.date.today() - dt.timedelta(days=1)}).where(
        Card.id == holder["card_id"]
    )
    # the default: an expired physical card keeps its e-card working
    assert (await _refresh(client, session["refresh_token"])).status_code == 200
    original = platform.settings
    platform.settings = msgspec.structs.replace(
        original, card_policies={"330000": CardPolicy(expired_card="suspend")}
    )
    try:
        assert (await _verify(client, verifier, code))["reason"] == "card_not_active"
        other = await world.person_with_card()
        other_session = (await world.issue(other))["session"]
        await Card.update({Card.expiry_date: dt.date.today() - dt.timedelta(days=1)}).where(
            Card.id == other["card_id"]
        )
        refused = await _refresh(client, other_session["refresh_token"])
        assert refused.status_code == 403 and refused.json()["code"] == "card_not_active"
    finally:
        platform.settings = original


async def test_the_holders_other_channels_are_told_of_a_new_issuance_and_an_unbinding(
    client: httpx.AsyncClient, world: World
) -> None:
    holder = await world.person_with_card()
    first = await world.issue(holder)
    hook = await client.put(
        f"/operator/v1/clients/{world.channel['client_id']}/webhook",
        json={"url": "https://channel.example/hooks"},
        headers=world.op(),
    )
    assert hook.status_code == 201, hook.text
    bank = await world.new_client("channel", regions=["330000"])
    second = await world.issue(holder, channel=bank, password=None)
    assert second["ecard"]["id"] != first["ecard"]["id"]
    told = await WebhookDelivery.select().where(
        (WebhookDelivery.client == world.channel["client_id"])
        & (WebhookDelivery.event_type == "ecard.issued_elsewhere")
    )
    assert len(told) == 1
    payload = (
        told[0]["payload"]
        if isinstance(told[0]["payload"], dict)
        else json.loads(told[0]["payload"])
    )
    assert payload["data"] == {
        "ecard_id": first["ecard"]["id"],
        "ecard_status": "active",
    }  # its own e-card, no more
    # the holder unbinds in the first app: that channel is told (the bank's own unbinding is its own
    # act)
    unbound = await client.post(
        "/holder/v1/ecard/unbind", headers=bearer(first["session"]["access_token"])
    )
    assert unbound.status_code == 200, unbound.text
    events = [
        d["event_type"]
        for d in await WebhookDelivery.select().where(
            WebhookDelivery.client == world.channel["client_id"]
        )
    ]
    assert "ecard.unbound" in events
    # a re-issuance on the same channel (the same e-card) tells nobody
    again = await world.issue(holder, channel=bank, password=None)
    assert again["ecard"]["id"] == second["ecard"]["id"]
    assert (
        len(
            await WebhookDelivery.select().where(
                WebhookDelivery.event_type == "ecard.issued_elsewhere"
            )
        )
        == 1
    )
