"""Scan-to-login as the browser and the holder's app see it: the page, the long poll, the QR's
renewal, what the app is told, answering once, and the card rules."""

from __future__ import annotations

import asyncio
import json
import time

from tests.helpers import platform_of
from tests.oidc.conftest import (
    APPROVAL,
    REDIRECT_URI,
    callback_params,
    cancel_login,
    confirm_login,
    file_client,
    finish_login,
    new_holder,
    redeem,
    start_login,
)


async def test_the_login_page_is_safe_to_show_and_bilingual(client, rp):
    query = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
    }
    page = await client.get("/oidc/authorize", params=query)
    csp = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp
        and "frame-ancestors 'none'" in csp
    )
    assert (
        page.headers["x-frame-options"] == "DENY"
        and page.headers["referrer-policy"] == "no-referrer"
    )
    assert (
        '<html lang="zh-CN">' in page.text
        and "扫码登录" in page.text
        and "Scan to log in" in page.text
    )
    assert "<script>" not in page.text  # no inline script
    cookie = page.headers["set-cookie"]
    assert (
        "httponly" in cookie.lower()
        and "samesite=strict" in cookie.lower()
        and "Path=/oidc" in cookie
    )
    english = await client.get("/oidc/authorize", params=query | {"ui_locales": "en"})
    assert '<html lang="en">' in english.text
    session_id = english.text.split('data-session="')[1].split('"')[0]
    qr = await client.get(f"/oidc/login/{session_id}/qr.svg")
    assert qr.headers["content-type"].startswith("image/svg+xml") and b"<svg" in qr.content
    assert (await client.get("/static/login.js")).status_code == 200


async def test_the_app_sees_who_asks_for_what_and_from_where(client, rp, holder):
    session_id = await start_login(client, rp, scope="openid profile ecard")
    before = await client.get(f"/oidc/login/{session_id}/poll", params={"wait": "false"})
    assert before.json() == {"state": "pending"}
    described = await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    view = described.json()
    assert (
        view["client_name"].startswith("rp-")
        and view["client_logo_uri"] == "https://rp.example.test/logo.png"
    )
    assert [s["scope"] for s in view["scopes"]] == ["openid", "profile", "ecard"] and view[
        "scopes"
    ][1]["zh"]
    assert view["origin"]["ip"] and view["origin"]["user_agent"] is not None
    assert abs(view["origin"]["started_at"] - time.time()) < 60 and view["state"] == "scanned"
    polled = await client.get(f"/oidc/login/{session_id}/poll", params={"known": "pending"})
    assert polled.json() == {"state": "scanned"}  # the page learns at once, without reloading


async def test_the_long_poll_returns_when_the_holder_answers(client, rp, holder):
    session_id = await start_login(client, rp)
    waiting = asyncio.create_task(
        client.get(f"/oidc/login/{session_id}/poll", params={"known": "pending"})
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    # the page learns who approved (masked, nothing more) and must confirm before any code exists
    assert (await asyncio.wait_for(waiting, 5)).json() == {
        "state": "approved_pending_confirmation",
        "holder_name": "张*三",
    }


async def test_a_login_is_answered_once(client, rp, holder):
    session_id = await start_login(client, rp)
    answers = await asyncio.gather(
        client.post(
            f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
        ),
        client.post(f"/holder/v1/logins/{session_id}/deny", headers=holder.headers()),
    )
    assert sorted(r.status_code for r in answers) == [200, 409]
    again = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    assert again.status_code == 409 and again.json()["code"] == "login_session_answered"


async def test_another_holder_cannot_take_over_a_scanned_login(client, world, rp, holder):
    other = await new_holder(world)
    session_id = await start_login(client, rp)
    assert (
        await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    ).status_code == 200
    hijack = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=other.headers(), json=APPROVAL
    )
    assert hijack.status_code == 409


async def test_denial_returns_access_denied_to_the_client(client, rp, holder):
    session_id = await start_login(client, rp)
    await client.post(f"/holder/v1/logins/{session_id}/deny", headers=holder.headers())
    params = callback_params(await finish_login(client, session_id))
    assert params["error"] == "access_denied" and params["state"] == "st-1" and params["iss"]


async def test_a_card_reported_lost_during_the_login_stops_the_approval(client, world, rp, holder):
    session_id = await start_login(client, rp)
    assert (
        await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    ).status_code == 200
    lost = await client.post(
        f"/operator/v1/cards/{holder.card_id}/status",
        json={"status": "lost", "reason": "挂失"},
        headers=world.op(),
    )
    assert lost.status_code == 200
    approval = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    assert approval.status_code in (401, 403)
    assert (
        await client.get(
            f"/oidc/login/{session_id}/poll", params={"known": "pending", "wait": "false"}
        )
    ).json()["state"] == "scanned"


async def test_a_card_lost_after_approval_gets_no_tokens(client, world, rp, holder):
    session_id = await start_login(client, rp)
    await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    params = callback_params(await confirm_login(client, session_id))
    await client.post(
        f"/operator/v1/cards/{holder.card_id}/status",
        json={"status": "lost", "reason": "挂失"},
        headers=world.op(),
    )
    response = await client.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT_URI,
        },
        headers=rp.auth(),
    )
    assert response.json()["error"] == "invalid_grant"


async def test_an_unbound_ecard_cannot_approve(client, rp, holder):
    session_id = await start_login(client, rp)
    await client.post("/holder/v1/ecard/unbind", headers=holder.headers())
    assert (
        await client.post(
            f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
        )
    ).status_code in (401, 403)


async def test_only_the_browser_that_started_the_login_can_watch_or_finish_it(client, rp, holder):
    session_id = await start_login(client, rp)
    await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    saved = dict(client.cookies)
    client.cookies.clear()
    assert (await client.get(f"/oidc/login/{session_id}/poll")).status_code == 403
    assert (await client.get(f"/oidc/login/{session_id}/continue")).status_code == 403
    assert (await confirm_login(client, session_id)).status_code == 403
    assert (await cancel_login(client, session_id)).status_code == 403
    client.cookies.update(saved)
    assert (await confirm_login(client, session_id)).status_code == 200
    second = await confirm_login(client, session_id)
    assert second.status_code == 404 and "location" not in second.text


async def test_continuing_before_the_holder_answered_goes_nowhere(client, rp):
    session_id = await start_login(client, rp)
    response = await finish_login(client, session_id)
    assert response.status_code == 400 and "location" not in response.headers


async def test_an_expired_qr_is_replaced_on_the_same_page(client, rp, holder, monkeypatch):
    monkeypatch.setenv("ECARD_OIDC_POLICY", json.dumps({"login_session_ttl": 1}))
    page = await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "s",
        },
    )
    session_id = page.text.split('data-session="')[1].split('"')[0]
    flow_id = page.text.split('data-flow="')[1].split('"')[0]
    await asyncio.sleep(1.2)
    assert (await client.get(f"/oidc/login/{session_id}/poll")).json() == {"state": "expired"}
    assert (
        await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    ).status_code == 404
    renewed = await client.post(f"/oidc/flows/{flow_id}/renew")
    fresh = renewed.json()["session_id"]
    assert (
        renewed.status_code == 200
        and fresh != session_id
        and renewed.json()["qr_svg_url"].endswith("qr.svg")
    )
    await client.post(f"/holder/v1/logins/{fresh}/approve", headers=holder.headers(), json=APPROVAL)
    assert "code" in callback_params(await confirm_login(client, fresh))
    client.cookies.clear()
    assert (await client.post(f"/oidc/flows/{flow_id}/renew")).status_code == 403


async def test_unknown_logins_are_not_found(client, holder):
    response = await client.get("/holder/v1/logins/nope", headers=holder.headers())
    assert response.status_code == 404 and response.json()["code"] == "login_session_not_found"
    assert (await client.get("/holder/v1/logins/nope")).status_code == 401


async def test_a_client_suspended_while_the_page_waits_cannot_be_approved(client, world, holder):
    rp = await file_client(world)
    session_id = await start_login(client, rp)
    await client.post(
        f"/operator/v1/oidc/clients/{rp.client_id}/status",
        json={"status": "suspended"},
        headers=world.op(),
    )
    response = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    assert response.status_code == 403 and response.json()["code"] == "client_not_live"


# --- the browser confirms who approved (draft-ietf-oauth-cross-device-security) ----------------


async def test_an_approval_issues_no_code_until_the_browser_confirms(client, rp, holder):
    session_id = await start_login(client, rp)
    await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    assert (
        await client.post(
            f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
        )
    ).status_code == 200
    polled = await client.get(
        f"/oidc/login/{session_id}/poll", params={"known": "scanned", "wait": "false"}
    )
    assert polled.json() == {"state": "approved_pending_confirmation", "holder_name": "张*三"}
    assert polled.headers["cache-control"] == "no-store"
    # waiting on the new state is allowed (the page may watch for expiry) and returns at once
    # when done
    same = await client.get(
        f"/oidc/login/{session_id}/poll",
        params={"known": "approved_pending_confirmation", "wait": "false"},
    )
    assert same.json()["state"] == "approved_pending_confirmation"
    continued = await finish_login(client, session_id)  # the old way on: refused, no code
    assert continued.status_code == 400 and "location" not in continued.headers
    keys = [k for k in getattr(platform_of(client).store, "_entries", {}) if "oidc:code:" in k]
    assert keys == []  # (memory store) nothing was issued yet
    confirmed = await confirm_login(client, session_id)
    assert confirmed.status_code == 200 and confirmed.headers["cache-control"] == "no-store"
    params = callback_params(confirmed)
    assert set(params) == {"code", "state", "iss"} and params["state"] == "st-1"
    assert (await redeem(client, rp, params["code"])).status_code == 200
    assert (
        await cancel_login(client, session_id)
    ).status_code == 404  # confirmed: nothing left to cancel


async def test_the_browser_can_cancel_an_approval_that_was_not_its_person(
    client, world, rp, holder
):
    session_id = await start_login(client, rp)
    assert (
        await client.post(
            f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
        )
    ).status_code == 200
    cancelled = await cancel_login(client, session_id)
    assert cancelled.status_code == 200
    params = callback_params(cancelled)
    assert (
        params["error"] == "access_denied"
        and params["state"] == "st-1"
        and params["iss"]
        and "code" not in params
    )
    # the approval is discarded: no confirm, no continue, no second answer
    assert (await confirm_login(client, session_id)).status_code == 404
    assert (await finish_login(client, session_id)).status_code == 404
    again = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    assert again.status_code == 404
    trail = await client.get(
        "/operator/v1/audit",
        params={"target_id": rp.client_id, "action": "oidc.login.cancel"},
        headers=world.op("auditor"),
    )
    assert [event["detail"] for event in trail.json()["items"]] in (
        [{"after_approval": True}],
        ['{"after_approval": true}'],
    )


async def test_confirm_needs_the_holders_approval_and_the_pages_origin(client, rp, holder):
    session_id = await start_login(client, rp)
    early = await confirm_login(client, session_id)
    assert early.status_code == 400 and early.json()["code"] == "authorization_pending"
    await client.post(f"/holder/v1/logins/{session_id}/deny", headers=holder.headers())
    assert (
        await confirm_login(client, session_id)
    ).status_code == 400  # a denial is never confirmed into a code
    params = callback_params(await finish_login(client, session_id))
    assert params["error"] == "access_denied"
    other = await start_login(client, rp)
    await client.post(f"/holder/v1/logins/{other}/approve", headers=holder.headers(), json=APPROVAL)
    foreign = await client.post(
        f"/oidc/login/{other}/confirm", headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert (await confirm_login(client, other)).status_code == 200  # still there for the real page


async def test_the_page_learns_only_the_masked_name(client, world, rp):
    holder = await new_holder(world)
    session_id = await start_login(client, rp, scope="openid")  # even without the profile scope
    await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=APPROVAL
    )
    polled = (await client.get(f"/oidc/login/{session_id}/poll", params={"wait": "false"})).json()
    assert set(polled) == {"state", "holder_name"} and polled["holder_name"] == "张*三"
