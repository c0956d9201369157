"""Sessions through the card's life, the holder's list of sessions, revocation by the holder and
the per-e-card cap, on both backends."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from ecard.auth import REVOCATION_CLOCK_MARGIN, _holder_access
from ecard.registry.tables import AuditEvent, HolderSession
from tests.helpers import World, bearer, platform_of
from tests.holder_sessions.conftest import Device, dpop_headers, issue, refresh, set_card_status


async def audit_rows(action: str, target_id: str | None = None) -> list[dict]:
    query = AuditEvent.select().where(AuditEvent.action == action)
    if target_id is not None:
        query = query.where(AuditEvent.target_id == target_id)
    return await query


# --- refresh through the card's life ----------------------------------------------------------


@pytest.mark.parametrize("bound", [False, True], ids=["bearer", "dpop"])
async def test_refresh_while_the_card_is_lost_is_card_not_active_and_continues_after_the_loss_is_undone(  # noqa: E501 - the name is the rule
    world: World, bound: bool
) -> None:
    phone = Device() if bound else None
    holder = await world.person_with_card()
    issued = await issue(world, holder, phone)
    session, ecard_id = issued["session"], issued["ecard"]["id"]
    await set_card_status(world, holder["card_id"], "lost")
    for _ in range(2):  # answered the same way each time: nothing was rotated
        lost = await refresh(world.client, session["refresh_token"], phone)
        assert lost.status_code == 403 and lost.json()["code"] == "card_not_active", lost.text
    assert await audit_rows("session.refresh_reuse", ecard_id) == []
    await set_card_status(world, holder["card_id"], "active")  # 解挂
    await asyncio.sleep(
        REVOCATION_CLOCK_MARGIN
    )  # the loss's revocation also covers tokens minted just after it
    again = await refresh(world.client, session["refresh_token"], phone)
    assert again.status_code == 200, again.text
    tokens = again.json()
    headers = (
        dpop_headers(world.client, phone, "GET", "/holder/v1/ecard", tokens["access_token"])
        if phone
        else bearer(tokens["access_token"])
    )
    assert (await world.client.get("/holder/v1/ecard", headers=headers)).status_code == 200
    assert await audit_rows("session.refresh_reuse", ecard_id) == []


async def test_a_rotated_refresh_token_coming_back_is_still_reuse(world: World) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    first = issued["session"]
    second = (await refresh(world.client, first["refresh_token"])).json()
    reused = await refresh(world.client, first["refresh_token"])
    assert reused.status_code == 401 and reused.json()["code"] == "token_invalid"
    assert len(await audit_rows("session.refresh_reuse", issued["ecard"]["id"])) == 1
    # the legitimate session ended too
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(second["access_token"]))
    ).status_code == 401
    assert (await refresh(world.client, second["refresh_token"])).status_code == 401


async def test_a_cancelled_card_ends_its_sessions_for_good(world: World) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    await set_card_status(world, holder["card_id"], "lost")
    await set_card_status(world, holder["card_id"], "cancelled")
    ended = await refresh(world.client, issued["session"]["refresh_token"])
    assert ended.status_code == 401 and ended.json()["code"] == "token_invalid"
    assert await audit_rows("session.refresh_reuse", issued["ecard"]["id"]) == []
    row = (
        await HolderSession.select(HolderSession.ended_reason)
        .where(HolderSession.ecard == issued["ecard"]["id"])
        .first()
    )
    assert row["ended_reason"] == "card_ended"


async def test_after_logout_the_refresh_token_is_invalid_without_a_reuse_alarm(
    world: World,
) -> None:
    issued = await world.issue(await world.person_with_card())
    session = issued["session"]
    out = await world.client.post(
        "/holder/v1/session/logout", headers=bearer(session["access_token"])
    )
    assert out.status_code == 204
    after = await refresh(world.client, session["refresh_token"])
    assert after.status_code == 401 and after.json()["code"] == "token_invalid"
    assert await audit_rows("session.refresh_reuse", issued["ecard"]["id"]) == []


async def test_after_a_replacement_the_refresh_gives_tokens_for_the_new_card(world: World) -> None:
    phone = Device()
    holder = await world.person_with_card()
    issued = await issue(world, holder, phone)
    await set_card_status(world, holder["card_id"], "lost")
    requested = await world.client.post(
        f"/operator/v1/cards/{holder['card_id']}/replacement-request",
        json={"reason": "lost"},
        headers=world.op(),
    )
    assert requested.status_code == 200, requested.text
    replaced = await world.client.post(
        f"/operator/v1/cards/{holder['card_id']}/replace",
        json={
            "new_card": {
                "card_number": "R" + holder["card_number"][1:],
                "chip_serial": "ABCDEF0123456789",
                "identification_code": "00112233445566778899AABB",
                "issue_date": "2026-01-01",
                "expiry_date": "2036-01-01",
            }
        },
        headers=world.op(),
    )
    if replaced.status_code == 404:
        pytest.skip("the replacement operation is not mounted in this checkout")
    assert replaced.status_code in (200, 201), replaced.text
    new_card = replaced.json()["new_card_id"]
    again = await refresh(world.client, issued["session"]["refresh_token"], phone)
    assert again.status_code == 200, again.text
    token = again.json()["access_token"]
    me = await world.client.get(
        "/holder/v1/ecard",
        headers=dpop_headers(world.client, phone, "GET", "/holder/v1/ecard", token),
    )
    assert me.status_code == 200 and me.json()["id"] == issued["ecard"]["id"]
    listed = await world.client.get(
        "/holder/v1/sessions",
        headers=dpop_headers(world.client, phone, "GET", "/holder/v1/sessions", token),
    )
    assert listed.status_code == 200 and [s["current"] for s in listed.json()] == [True]
    assert _holder_access(platform_of(world.client), token).card_id == new_card


# --- the holder's sessions ----------------------------------------------------------------------


async def test_the_holder_sees_the_sessions_of_every_channel_app(world: World) -> None:
    phone = Device()
    holder = await world.person_with_card()
    bank = await world.new_client("channel", name="某银行 app")
    in_app = await issue(world, holder, phone)
    at_bank = await world.issue(holder, bank)
    stranger = await world.issue(await world.person_with_card(name="李四"))
    token = in_app["session"]["access_token"]

    async def listing(access_token: str) -> list[dict]:
        response = await world.client.get(
            "/holder/v1/sessions",
            headers=dpop_headers(world.client, phone, "GET", "/holder/v1/sessions", access_token),
        )
        assert response.status_code == 200, response.text
        return response.json()

    sessions = await listing(token)
    assert len(sessions) == 2
    mine = next(s for s in sessions if s["current"])
    bank_session = next(s for s in sessions if not s["current"])
    assert mine["channel_id"] == world.channel["client_id"] and mine["device_key"] == phone.jkt[:8]
    assert "last_used" not in mine  # never refreshed yet
    assert (
        bank_session["channel_id"] == bank["client_id"]
        and bank_session["channel_name"] == "某银行 app"
    )
    assert "device_key" not in bank_session
    assert stranger["ecard"]["id"] not in str(sessions)
    # a refresh keeps the session's id and start, and marks it used
    refreshed = (await refresh(world.client, in_app["session"]["refresh_token"], phone)).json()
    after = await listing(refreshed["access_token"])
    mine_after = next(s for s in after if s["current"])
    assert mine_after["id"] == mine["id"] and mine_after["created_at"] == mine["created_at"]
    assert mine_after["last_used"] >= mine["created_at"]
    # the other app's session, unchanged
    assert next(s for s in after if not s["current"]) == bank_session
    assert at_bank["session"]["token_type"] == "Bearer"


async def test_the_holder_revokes_another_apps_session_at_once(world: World) -> None:
    holder = await world.person_with_card()
    bank = await world.new_client("channel")
    in_app = (await world.issue(holder))["session"]
    at_bank = await world.issue(holder, bank)
    listed = (
        await world.client.get("/holder/v1/sessions", headers=bearer(in_app["access_token"]))
    ).json()
    target = next(s for s in listed if not s["current"])
    revoked = await world.client.post(
        f"/holder/v1/sessions/{target['id']}/revoke", headers=bearer(in_app["access_token"])
    )
    assert revoked.status_code == 204, revoked.text
    gone = await world.client.post(
        "/holder/v1/codes", headers=bearer(at_bank["session"]["access_token"])
    )
    assert gone.status_code == 401 and gone.json()["code"] == "token_invalid"
    no_refresh = await refresh(world.client, at_bank["session"]["refresh_token"])
    assert no_refresh.status_code == 401 and no_refresh.json()["code"] == "token_invalid"
    assert await audit_rows("session.refresh_reuse") == []
    rows = await audit_rows("session.revoke", target["id"])
    assert (
        len(rows) == 1
        and holder["name"] not in str(rows)
        and holder["identity_number"] not in str(rows)
    )
    again = await world.client.post(
        f"/holder/v1/sessions/{target['id']}/revoke", headers=bearer(in_app["access_token"])
    )
    assert again.status_code == 404 and again.json()["code"] == "session_not_found"
    remaining = (
        await world.client.get("/holder/v1/sessions", headers=bearer(in_app["access_token"]))
    ).json()
    assert [s["current"] for s in remaining] == [True]


async def test_a_holder_cannot_revoke_another_persons_session(world: World) -> None:
    mine = (await world.issue(await world.person_with_card()))["session"]
    theirs = (await world.issue(await world.person_with_card(name="李四")))["session"]
    their_list = (
        await world.client.get("/holder/v1/sessions", headers=bearer(theirs["access_token"]))
    ).json()
    refused = await world.client.post(
        f"/holder/v1/sessions/{their_list[0]['id']}/revoke", headers=bearer(mine["access_token"])
    )
    assert refused.status_code == 404 and refused.json()["code"] == "session_not_found"
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(theirs["access_token"]))
    ).status_code == 200


async def test_revoking_the_current_session_signs_out(world: World) -> None:
    session = (await world.issue(await world.person_with_card()))["session"]
    listed = (
        await world.client.get("/holder/v1/sessions", headers=bearer(session["access_token"]))
    ).json()
    out = await world.client.post(
        f"/holder/v1/sessions/{listed[0]['id']}/revoke", headers=bearer(session["access_token"])
    )
    assert out.status_code == 204
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(session["access_token"]))
    ).status_code == 401


async def test_issuing_one_session_over_the_cap_ends_the_oldest(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = platform_of(world.client)
    monkeypatch.setattr(
        platform,
        "settings",
        msgspec.structs.replace(platform.settings, holder_max_sessions_per_ecard=3),
    )
    holder = await world.person_with_card()
    issued = [await world.issue(holder) for _ in range(3)]
    ecard_id = issued[0]["ecard"]["id"]
    assert all(i["ecard"]["id"] == ecard_id for i in issued)
    fourth = await world.issue(holder)
    oldest = issued[0]["session"]
    evicted = await world.client.get("/holder/v1/ecard", headers=bearer(oldest["access_token"]))
    assert evicted.status_code == 401 and evicted.json()["code"] == "token_invalid"
    assert (await refresh(world.client, oldest["refresh_token"])).status_code == 401
    for kept in [*issued[1:], fourth]:
        assert (
            await world.client.get(
                "/holder/v1/ecard", headers=bearer(kept["session"]["access_token"])
            )
        ).status_code == 200
    listed = (
        await world.client.get(
            "/holder/v1/sessions", headers=bearer(fourth["session"]["access_token"])
        )
    ).json()
    assert len(listed) == 3
    rows = await audit_rows("session.evicted")
    assert len(rows) == 1 and rows[0]["actor_kind"] == "channel"
    assert await audit_rows("session.refresh_reuse") == []


async def test_the_default_cap_is_five(world: World) -> None:
    holder = await world.person_with_card()
    sessions = [(await world.issue(holder))["session"] for _ in range(6)]
    listed = (
        await world.client.get("/holder/v1/sessions", headers=bearer(sessions[-1]["access_token"]))
    ).json()
    assert len(listed) == 5
    assert (
        await world.client.get("/holder/v1/ecard", headers=bearer(sessions[0]["access_token"]))
    ).status_code == 401
