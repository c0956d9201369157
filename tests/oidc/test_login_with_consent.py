"""Login and data in one flow (issue 18): one filing logs the holder in and asks for data in the
same approval (RFC 9396 ``authorization_details``), addresses later requests by the pairwise
``sub``, receives ``identity.basic`` claims only under a live grant (each release recorded), and
the holder sees and revokes logins and grants in one list."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from ecard.consent.tables import Consent, ConsentAccess, ConsentEvent
from tests.helpers import identity_number
from tests.oidc.conftest import (
    APPROVAL,
    REDIRECT_URI,
    Holder,
    RelyingParty,
    confirm_login,
    new_holder,
    redeem,
    start_login,
)

DAY = 86_400


@dataclass
class Filing:
    """One partner filing: its id is both the OIDC client id and the consent party id."""

    rp: RelyingParty

    @property
    def id(self) -> str:
        return self.rp.client_id

    def auth(self) -> dict[str, str]:
        return self.rp.auth()


async def file_filing(
    world,
    data_scopes: list[str],
    login_scopes: list[str] | None = None,
    purposes: list[str] | None = None,
):
    """A live filing for login (``openid profile ecard``) and data (``data_scopes``, for
    ``purposes`` when given, else for any catalogue purpose)."""
    capabilities = {
        "login": {
            "redirect_uris": [REDIRECT_URI],
            "scopes": login_scopes or ["openid", "profile", "ecard"],
        },
        "data": {"scopes": data_scopes, "purposes": purposes or []},
    }
    filed = await world.client.post(
        "/operator/v1/applications",
        json={"name": f"人社服务-{uuid.uuid4().hex[:8]}", "capabilities": capabilities},
        headers=world.op(),
    )
    assert filed.status_code == 201, filed.text
    body = filed.json()
    for step in ("assess", "security_test", "approve", "go_live"):
        taken = await world.client.post(
            f"/operator/v1/applications/{body['id']}/steps", json={"step": step}, headers=world.op()
        )
        assert taken.status_code == 200, taken.text
    return Filing(RelyingParty(body["id"], body["client_secret"]))


def detail(*scopes: str, **overrides) -> str:
    return json.dumps(
        [
            {
                "type": "ecard_consent",
                "datatypes": list(scopes),
                "purpose_code": "benefit_application",
                "purpose": "社保待遇申领",
                "duration_seconds": 30 * DAY,
                **overrides,
            }
        ]
    )


def callback(response) -> dict[str, str]:
    location = response.json()["location"] if response.status_code == 200 else None
    location = location or response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def login(client, filing: Filing, holder: Holder, data_scopes=None, **params) -> dict:
    """Scan-to-login with one approval that answers the data request too; the token response."""
    session_id = await start_login(client, filing.rp, **params)
    described = await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())
    assert described.status_code == 200, described.text
    approval = dict(APPROVAL) if data_scopes is None else {**APPROVAL, "data_scopes": data_scopes}
    approved = await client.post(
        f"/holder/v1/logins/{session_id}/approve", headers=holder.headers(), json=approval
    )
    assert approved.status_code == 200, approved.text
    code = callback(await confirm_login(client, session_id))["code"]
    tokens = await redeem(client, filing.rp, code)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def claims_of(id_token: str) -> dict:
    return jwt.decode(id_token, options={"verify_signature": False})


async def accesses(grant_id: str) -> int:
    return await ConsentAccess.count().where(ConsentAccess.consent == grant_id)


@pytest.fixture()
async def gov(world) -> Filing:
    return await file_filing(world, ["identity.basic", "card.status", "insurance.enrollment"])


async def test_the_approval_lists_login_and_data_apart_and_each_data_scope_can_be_refused(
    client, world, gov
):
    holder = await new_holder(world)
    session_id = await start_login(
        client, gov.rp, authorization_details=detail("identity.basic", "card.status")
    )
    view = (await client.get(f"/holder/v1/logins/{session_id}", headers=holder.headers())).json()
    assert [s["scope"] for s in view["scopes"]] == ["openid", "profile", "ecard"]
    data = view["data"]
    assert [s["scope"] for s in data["scopes"]] == ["identity.basic", "card.status"]
    assert "identity_number" in data["scopes"][0]["fields"]
    assert data["purpose_code"] == "benefit_application" and data["purpose_zh"]
    assert data["duration_seconds"] == 30 * DAY
    # a scope that was not asked for cannot be granted
    wrong = await client.post(
        f"/holder/v1/logins/{session_id}/approve",
        headers=holder.headers(),
        json={**APPROVAL, "data_scopes": ["benefit.payments"]},
    )
    assert wrong.status_code == 400 and wrong.json()["code"] == "consent_scopes_not_requested"
    approved = await client.post(
        f"/holder/v1/logins/{session_id}/approve",
        headers=holder.headers(),
        json={**APPROVAL, "data_scopes": ["identity.basic"]},
    )
    assert approved.status_code == 200, approved.text
    code = callback(await confirm_login(client, session_id))["code"]
    tokens = (await redeem(client, gov.rp, code)).json()
    [granted] = tokens["authorization_details"]
    assert granted["type"] == "ecard_consent" and granted["datatypes"] == ["identity.basic"]
    grant_id = granted["grant_id"]
    # the grant is an ordinary consent grant, recorded on the ledger as requested then granted
    row = await Consent.select().where(Consent.id == grant_id).first()
    assert row["status"] == "granted" and row["relying_party"] == gov.id
    events = (
        await ConsentEvent.select(ConsentEvent.event)
        .where(ConsentEvent.consent == grant_id)
        .order_by(ConsentEvent.id)
    )
    # then one access: the ID token's release of identity.basic
    assert [e["event"] for e in events] == ["requested", "granted", "accessed"]
    # the data API serves what was granted, and refuses what the holder refused
    read = await client.get(f"/consent/v1/grants/{grant_id}/data", headers=gov.auth())
    assert read.status_code == 200, read.text
    assert read.json()["scopes"] == ["identity.basic"]
    refused = await client.get(
        f"/consent/v1/grants/{grant_id}/data", params={"scope": "card.status"}, headers=gov.auth()
    )
    assert refused.status_code == 403 and refused.json()["code"] == "consent_scope_not_granted"


async def test_identity_claims_are_released_under_a_live_grant_and_each_release_is_recorded(
    client, world, gov
):
    person = await world.person_with_card("王小明")
    issued = await world.issue(person)
    holder = Holder(issued["session"]["access_token"], issued["ecard"]["id"], person["card_id"])
    tokens = await login(client, gov, holder, authorization_details=detail("identity.basic"))
    grant_id = tokens["authorization_details"][0]["grant_id"]
    id_token = claims_of(tokens["id_token"])
    assert id_token["name"] == "王小明"
    assert id_token["identity_number"] == person["identity_number"]
    assert id_token["gender"] == "male" and id_token["birthdate"]
    assert await accesses(grant_id) == 1  # the ID token's release
    info = await client.get(
        "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 200, info.text
    assert info.json()["identity_number"] == person["identity_number"]
    assert info.json()["name"] == "王小明" and info.json()["sub"] == id_token["sub"]
    assert await accesses(grant_id) == 2  # and userinfo's
    # a later login without a data request still carries them while the grant lives
    again = await login(client, gov, holder)
    assert "authorization_details" not in again
    assert claims_of(again["id_token"])["identity_number"] == person["identity_number"]
    assert await accesses(grant_id) == 3
    # the holder revokes the grant: the next userinfo shows only the masked login name
    revoked = await client.post(
        f"/holder/v1/authorizations/grant/{grant_id}/revoke", headers=holder.headers()
    )
    assert revoked.status_code == 200, revoked.text
    info = await client.get(
        "/oidc/userinfo", headers={"Authorization": f"Bearer {again['access_token']}"}
    )
    assert info.status_code == 200
    assert "identity_number" not in info.json() and info.json()["name"] == "王*明"
    assert await accesses(grant_id) == 3


async def test_a_filing_not_entitled_gets_no_identity_claims_and_cannot_ask(client, world, rp):
    """A login-only filing (no data capability): an identity request goes back as an error."""
    holder = await new_holder(world)
    response = await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": rp.redirect_uri,
            "scope": "openid profile",
            "state": "s",
            "authorization_details": detail("identity.basic"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert callback(response)["error"] == "invalid_authorization_details"
    tokens = await login(client, Filing(rp), holder)
    assert "identity_number" not in claims_of(tokens["id_token"])


async def test_a_data_filing_asks_only_for_its_entitled_scopes(client, world):
    card_only = await file_filing(world, ["card.status"])
    for bad in (
        detail("identity.basic"),  # not entitled
        detail("no.such.scope"),
        detail("card.status", purpose_code="nonsense"),
        detail("card.status", duration_seconds=60),
        detail("card.status", extra="x"),  # an unknown member (RFC 9396 §5)
        detail("card.status", type="payment_initiation"),
        "not json",
        "[]",
        detail("card.status")[:-1] + "," + detail("card.status")[1:],  # two details
    ):
        response = await client.get(
            "/oidc/authorize",
            params={
                "response_type": "code",
                "client_id": card_only.id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": "s",
                "authorization_details": bad,
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, (bad, response.text)
        assert callback(response)["error"] == "invalid_authorization_details", bad
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert discovery["authorization_details_types_supported"] == ["ecard_consent"]


async def test_refusing_every_data_scope_logs_in_and_records_a_denial(client, world, gov):
    holder = await new_holder(world)
    tokens = await login(
        client, gov, holder, data_scopes=[], authorization_details=detail("identity.basic")
    )
    assert tokens["authorization_details"] == []
    assert "identity_number" not in claims_of(tokens["id_token"])
    rows = await Consent.select(Consent.status).where(Consent.relying_party == gov.id)
    assert [r["status"] for r in rows] == ["denied"]


async def test_a_consent_request_names_the_holder_by_the_pairwise_sub(client, world, gov):
    holder = await new_holder(world)
    sub = claims_of((await login(client, gov, holder))["id_token"])["sub"]
    body = {
        "scopes": ["insurance.enrollment"],
        "purpose_code": "benefit_application",
        "duration_seconds": 30 * DAY,
    }
    asked = await client.post(
        "/consent/v1/requests", json={**body, "holder": {"sub": sub}}, headers=gov.auth()
    )
    assert asked.status_code == 201, asked.text
    pending = await client.get("/holder/v1/consent/requests", headers=holder.headers())
    assert [r["id"] for r in pending.json()] == [asked.json()["id"]]
    # another filing's request with this sub reaches nobody (subjects are per filing)
    other = await file_filing(world, ["insurance.enrollment"])
    stray = await client.post(
        "/consent/v1/requests", json={**body, "holder": {"sub": sub}}, headers=other.auth()
    )
    assert stray.status_code == 201
    row = await Consent.select(Consent.person).where(Consent.id == stray.json()["id"]).first()
    assert row["person"] is None
    pending = await client.get("/holder/v1/consent/requests", headers=holder.headers())
    assert len(pending.json()) == 1
    # exactly one of sub and identity_number
    for ref in ({}, {"sub": sub, "identity_number": "110101199003070011"}):
        response = await client.post(
            "/consent/v1/requests", json={**body, "holder": ref}, headers=gov.auth()
        )
        assert response.status_code == 400, response.text


async def test_the_holder_lists_logins_and_grants_and_revokes_either(client, world, gov):
    holder = await new_holder(world)
    tokens = await login(client, gov, holder, authorization_details=detail("card.status"))
    grant_id = tokens["authorization_details"][0]["grant_id"]
    family_id = claims_of(tokens["id_token"])["sid"]
    listed = await client.get("/holder/v1/authorizations", headers=holder.headers())
    assert listed.status_code == 200, listed.text
    kinds = {(item["kind"], item["id"]) for item in listed.json()}
    assert kinds == {("login", family_id), ("grant", grant_id)}
    assert all(item["party_id"] == gov.id for item in listed.json())
    # nobody else sees or revokes them
    stranger = await new_holder(world)
    assert (await client.get("/holder/v1/authorizations", headers=stranger.headers())).json() == []
    for kind, item_id in (("login", family_id), ("grant", grant_id), ("other", family_id)):
        response = await client.post(
            f"/holder/v1/authorizations/{kind}/{item_id}/revoke", headers=stranger.headers()
        )
        assert response.status_code == 404, response.text
    # revoking the login ends its tokens at once
    revoked = await client.post(
        f"/holder/v1/authorizations/login/{family_id}/revoke", headers=holder.headers()
    )
    assert revoked.status_code == 200, revoked.text
    info = await client.get(
        "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 401
    refreshed = await client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=gov.auth(),
    )
    assert refreshed.status_code == 400
    again = await client.post(
        f"/holder/v1/authorizations/login/{family_id}/revoke", headers=holder.headers()
    )
    assert again.status_code == 404
    # revoking the grant ends data access, on the ledger
    assert (
        await client.post(
            f"/holder/v1/authorizations/grant/{grant_id}/revoke", headers=holder.headers()
        )
    ).status_code == 200
    read = await client.get(f"/consent/v1/grants/{grant_id}/data", headers=gov.auth())
    assert read.status_code == 403 and read.json()["code"] == "consent_revoked"
    assert (await client.get("/holder/v1/authorizations", headers=holder.headers())).json() == []


async def test_a_device_login_asks_for_no_data(client, gov):
    """The device grant takes no ``authorization_details``: refused, never silently dropped."""
    response = await client.post(
        "/oidc/device_authorization",
        data={"scope": "openid", "authorization_details": detail("card.status")},
        headers=gov.auth(),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_authorization_details"


async def test_a_filing_asks_only_for_the_purposes_it_is_filed_for(client, world):
    """(十八) a filing names its purposes: a request for another purpose is refused, at the consent
    API and in a login's authorization_details alike."""
    filing = await file_filing(world, ["insurance.enrollment"], purposes=["benefit_application"])
    body = {
        "holder": {"identity_number": identity_number()},
        "scopes": ["insurance.enrollment"],
        "duration_seconds": 30 * DAY,
    }
    filed = await client.post(
        "/consent/v1/requests",
        json={**body, "purpose_code": "benefit_application"},
        headers=filing.auth(),
    )
    assert filed.status_code == 201, filed.text
    other = await client.post(
        "/consent/v1/requests",
        json={**body, "purpose_code": "loan_application"},
        headers=filing.auth(),
    )
    assert other.status_code == 403 and other.json()["code"] == "consent_purpose_not_filed"
    page = await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": filing.id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "s",
            "nonce": "n",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
            "authorization_details": detail(
                "insurance.enrollment", purpose_code="loan_application"
            ),
        },
    )
    assert callback(page)["error"] == "invalid_authorization_details"


async def refresh(client, filing: Filing, refresh_token: str):
    return await client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers=filing.auth(),
    )


async def test_a_refresh_reports_the_login_grant_as_it_stands(client, world, gov):
    """RFC 9396 §7 on refresh: the grant the login's approval made, while it lives; an empty list
    once the holder revoked it (the login goes on); nothing for a login that asked for no data."""
    holder = await new_holder(world)
    tokens = await login(client, gov, holder, authorization_details=detail("card.status"))
    granted = tokens["authorization_details"]
    refreshed = await refresh(client, gov, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["authorization_details"] == granted
    revoked = await client.post(
        f"/holder/v1/authorizations/grant/{granted[0]['grant_id']}/revoke",
        headers=holder.headers(),
    )
    assert revoked.status_code == 200, revoked.text
    again = await refresh(client, gov, refreshed.json()["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.json()["authorization_details"] == []
    # a login without a data request: no details on its refreshes either
    plain = await login(client, gov, holder)
    plain_refreshed = await refresh(client, gov, plain["refresh_token"])
    assert plain_refreshed.status_code == 200, plain_refreshed.text
    assert "authorization_details" not in plain_refreshed.json()


async def test_a_refused_data_request_stays_refused_on_refresh(client, world, gov):
    holder = await new_holder(world)
    tokens = await login(
        client, gov, holder, data_scopes=[], authorization_details=detail("card.status")
    )
    assert tokens["authorization_details"] == []
    refreshed = await refresh(client, gov, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["authorization_details"] == []
