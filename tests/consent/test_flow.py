"""The consent flow as its users see it: a relying party asks, the holder approves some scopes,
the data API releases exactly those fields under the live grant, the holder sees the accesses and
revokes, and the next read is refused."""

from __future__ import annotations

from tests.consent.conftest import DAY, HOLDER_PASSWORD, ConsentWorld


async def test_catalogue_names_every_scope_and_its_fields(cw: ConsentWorld) -> None:
    response = await cw.client.get("/consent/v1/scopes")
    assert response.status_code == 200
    scopes = {s["id"]: s for s in response.json()["scopes"]}
    assert {
        "identity.basic",
        "card.status",
        "insurance.enrollment",
        "employment.status",
        "benefit.payments",
    } <= set(scopes)
    assert (
        scopes["insurance.enrollment"]["zh"] == "参保状态"
        and scopes["benefit.payments"]["zh"] == "待遇发放"
    )
    assert all(s["fields"] and s["en"] for s in scopes.values())


async def test_holder_approves_some_scopes_and_the_data_api_releases_only_those(
    cw: ConsentWorld,
) -> None:
    created = await cw.ask(scopes=["card.status", "insurance.enrollment", "benefit.payments"])
    assert created.status_code == 201, created.text
    grant_id = created.json()["id"]

    pending = await cw.client.get("/holder/v1/consent/requests", headers=cw.holder.headers)
    [request] = pending.json()
    assert request["id"] == grant_id and request["status"] == "pending"
    assert (
        request["relying_party"]["name"] == "某银行 (a bank)"
        and request["purpose_code"] == "loan_application"
    )

    answer = await cw.client.post(
        f"/holder/v1/consent/requests/{grant_id}/approve",
        json={"scopes": ["card.status", "insurance.enrollment"], "password": HOLDER_PASSWORD},
        headers=cw.holder.headers,
    )
    assert answer.status_code == 200, answer.text
    grant = answer.json()
    assert grant["status"] == "granted"
    assert [s["id"] for s in grant["granted_scopes"]] == ["card.status", "insurance.enrollment"]
    assert grant["starts_at"] and grant["expires_at"] > grant["starts_at"]

    as_party = await cw.client.get(f"/consent/v1/requests/{grant_id}", headers=cw.rp_headers)
    assert as_party.json()["status"] == "granted"

    data = await cw.read(grant_id)
    assert data.status_code == 200, data.text
    body = data.json()
    assert set(body["data"]) == {"card.status", "insurance.enrollment"}
    card = body["data"]["card.status"]
    assert set(card) == {"card_number_masked", "card_status", "issuer_region", "expiry_date"}
    assert card["card_status"] == "active" and card["card_number_masked"].endswith(
        cw.holder.person["card_number"][-4:]
    )
    assert {e["insurance_type"] for e in body["data"]["insurance.enrollment"]} >= {
        "pension",
        "medical",
    }
    assert (
        cw.holder.person["identity_number"] not in data.text
        and cw.holder.person["name"] not in data.text
    )

    narrower = await cw.read(grant_id, "card.status")
    assert set(narrower.json()["data"]) == {"card.status"}

    refused = await cw.read(grant_id, "benefit.payments")
    assert refused.status_code == 403 and refused.json()["code"] == "consent_scope_not_granted"

    listed = await cw.client.get("/holder/v1/consent/grants", headers=cw.holder.headers)
    [mine] = listed.json()
    assert mine["access_count"] == 2 and [a["scopes"] for a in mine["accesses"]] == [
        ["card.status", "insurance.enrollment"],
        ["card.status"],
    ]

    revoked = await cw.client.post(
        f"/holder/v1/consent/grants/{grant_id}/revoke", headers=cw.holder.headers
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = await cw.read(grant_id)
    assert after.status_code == 403 and after.json()["code"] == "consent_revoked"
    again = await cw.client.post(
        f"/holder/v1/consent/grants/{grant_id}/revoke", headers=cw.holder.headers
    )
    assert again.status_code == 409 and again.json()["code"] == "consent_not_revocable"


async def test_every_scope_is_backed_by_registry_data(cw: ConsentWorld) -> None:
    grant_id = await cw.granted(scopes=["identity.basic", "employment.status", "benefit.payments"])
    data = (await cw.read(grant_id)).json()["data"]
    assert data["identity.basic"]["identity_number"] == cw.holder.person["identity_number"]
    assert data["identity.basic"]["name"] == cw.holder.person["name"]
    assert data["employment.status"]["status"] == "employed"
    assert len(data["benefit.payments"]) == 12 and all(
        p["amount_fen"] > 0 for p in data["benefit.payments"]
    )


async def test_denied_request_serves_nothing_and_is_listed(cw: ConsentWorld) -> None:
    grant_id = (await cw.ask()).json()["id"]
    denied = await cw.client.post(
        f"/holder/v1/consent/requests/{grant_id}/deny", headers=cw.holder.headers
    )
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    refused = await cw.read(grant_id)
    assert refused.status_code == 403 and refused.json()["code"] == "consent_not_granted"
    listed = await cw.client.get(
        "/holder/v1/consent/grants", params={"status": "denied"}, headers=cw.holder.headers
    )
    assert [g["id"] for g in listed.json()] == [grant_id]


async def test_expired_grant_is_refused_and_recorded(cw: ConsentWorld) -> None:
    from ecard.consent.service import expire_due
    from ecard.consent.tables import Consent
    from tests.helpers import platform_of

    grant_id = await cw.granted(duration_seconds=DAY)
    await Consent.update({Consent.expires_ms: 1}).where(Consent.id == grant_id)  # a day has passed
    refused = await cw.read(grant_id)
    assert refused.status_code == 403 and refused.json()["code"] == "consent_expired"
    listed = await cw.client.get(
        "/holder/v1/consent/grants", params={"status": "expired"}, headers=cw.holder.headers
    )
    assert [g["id"] for g in listed.json()] == [grant_id]
    assert await expire_due(platform_of(cw.client)) == 1
    row = await Consent.select(Consent.status).where(Consent.id == grant_id).first()
    assert row["status"] == "expired"


async def test_other_holders_and_other_parties_see_nothing(cw: ConsentWorld) -> None:
    grant_id = await cw.granted()
    stranger = await cw.new_holder("王小五")
    assert (
        await cw.client.get("/holder/v1/consent/requests", headers=stranger.headers)
    ).json() == []
    for path in (
        f"/holder/v1/consent/grants/{grant_id}",
        f"/holder/v1/consent/grants/{grant_id}/receipts",
    ):
        response = await cw.client.get(path, headers=stranger.headers)
        assert response.status_code == 404 and response.json()["code"] == "consent_not_found"
    revoke = await cw.client.post(
        f"/holder/v1/consent/grants/{grant_id}/revoke", headers=stranger.headers
    )
    assert revoke.status_code == 404
    other_rp = await cw.world.new_client("relying_party", entitlements=["card.status"])
    response = await cw.read(grant_id, rp=other_rp)
    assert response.status_code == 404 and response.json()["code"] == "consent_not_found"


async def test_live_grant_scopes_for_scan_to_login(cw: ConsentWorld) -> None:
    from ecard.consent.service import live_grant_scopes
    from tests.helpers import platform_of

    platform = platform_of(cw.client)
    person_id = cw.holder.person["person_id"]
    assert await live_grant_scopes(platform, cw.rp["client_id"], person_id) == set()
    grant_id = await cw.granted(approve=["card.status"])
    assert await live_grant_scopes(platform, cw.rp["client_id"], person_id) == {"card.status"}
    await cw.client.post(f"/holder/v1/consent/grants/{grant_id}/revoke", headers=cw.holder.headers)
    assert await live_grant_scopes(platform, cw.rp["client_id"], person_id) == set()
