"""Bad input and faults: every refusal is a catalogue code, never a 500; an approval is answered
once however many race; an access that starts after a revocation committed fails."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecard.consent.schemas import CanonicalConsent
from ecard.consent.service import canonical_bytes
from ledger import Event, decode_leaf
from ledger.tables import LedgerEntry
from tests.consent.conftest import DAY, HOLDER_PASSWORD, ConsentWorld
from tests.helpers import basic, identity_number

BAD_REQUESTS = [
    ({"scopes": ["card.status", "medical.records"]}, 400, "consent_scope_unknown"),
    ({"scopes": []}, 400, "validation_failed"),
    ({"purpose_code": "marketing"}, 400, "consent_purpose_unknown"),
    ({"purpose_code": "other", "purpose": ""}, 400, "consent_purpose_unknown"),
    ({"duration_seconds": 60}, 400, "consent_duration_out_of_range"),
    ({"duration_seconds": 366 * DAY}, 400, "consent_duration_out_of_range"),
    ({"duration_seconds": -1}, 400, "consent_duration_out_of_range"),
    ({"holder": {"identity_number": "330102199003071234"}}, 400, "invalid_identity_number"),
    ({"purpose": "<script>"}, 400, "validation_failed"),
    ({"surprise": 1}, 400, "validation_failed"),
]


async def test_bad_requests_get_clear_codes(cw: ConsentWorld) -> None:
    for overrides, status, code in BAD_REQUESTS:
        response = await cw.ask(**overrides)
        assert (response.status_code, response.json()["code"]) == (status, code), (
            overrides,
            response.text,
        )
    assert (
        await cw.client.get("/holder/v1/consent/requests", headers=cw.holder.headers)
    ).json() == []


async def test_scopes_beyond_the_clients_entitlements_are_refused(cw: ConsentWorld) -> None:
    narrow = await cw.world.new_client("relying_party", entitlements=["card.status"])
    assert (await cw.ask(rp=narrow, scopes=["card.status"])).status_code == 201
    refused = await cw.ask(rp=narrow, scopes=["card.status", "identity.basic"])
    assert refused.status_code == 403 and refused.json()["code"] == "consent_scope_not_allowed"


async def test_only_live_relying_parties_ask_approve_or_read(cw: ConsentWorld) -> None:
    grant_id = await cw.granted()
    pending_id = (await cw.ask()).json()["id"]
    channel = await cw.client.post(
        "/consent/v1/requests",
        json={},
        headers=basic(cw.world.channel["client_id"], cw.world.channel["client_secret"]),
    )
    assert channel.status_code == 403 and channel.json()["code"] == "forbidden"
    disabled = await cw.client.post(
        f"/operator/v1/clients/{cw.rp['client_id']}/status",
        json={"status": "disabled", "reason": "filing withdrawn"},
        headers=cw.world.op(),
    )
    assert disabled.status_code == 200, disabled.text
    assert (await cw.ask()).json()["code"] == "forbidden"
    assert (await cw.read(grant_id)).status_code == 403
    approve = await cw.client.post(
        f"/holder/v1/consent/requests/{pending_id}/approve",
        json={"password": HOLDER_PASSWORD},
        headers=cw.holder.headers,
    )
    assert approve.status_code == 403 and approve.json()["code"] == "client_not_live"


async def test_unknown_holder_is_not_revealed(cw: ConsentWorld) -> None:
    """A request for a non-holder looks the same to the relying party, and reaches no one."""
    response = await cw.ask(holder={"identity_number": identity_number()})
    assert response.status_code == 201 and response.json()["status"] == "pending"
    assert (
        await cw.client.get("/holder/v1/consent/requests", headers=cw.holder.headers)
    ).json() == []


async def test_holder_cannot_approve_unrequested_scopes(cw: ConsentWorld) -> None:
    consent_id = (await cw.ask(scopes=["card.status"])).json()["id"]
    response = await cw.client.post(
        f"/holder/v1/consent/requests/{consent_id}/approve",
        json={"scopes": ["identity.basic"], "password": HOLDER_PASSWORD},
        headers=cw.holder.headers,
    )
    assert response.status_code == 400 and response.json()["code"] == "consent_scopes_not_requested"


async def test_lapsed_request_cannot_be_approved(cw: ConsentWorld) -> None:
    from ecard.consent.tables import Consent

    consent_id = (await cw.ask()).json()["id"]
    await Consent.update({Consent.request_expires_ms: 1}).where(Consent.id == consent_id)
    response = await cw.client.post(
        f"/holder/v1/consent/requests/{consent_id}/approve",
        json={"password": HOLDER_PASSWORD},
        headers=cw.holder.headers,
    )
    assert response.status_code == 409 and response.json()["code"] == "consent_request_expired"


async def test_racing_approvals_and_denials_are_answered_once(cw: ConsentWorld) -> None:
    consent_id = (await cw.ask()).json()["id"]
    answers = await asyncio.gather(
        *(
            cw.client.post(
                f"/holder/v1/consent/requests/{consent_id}/{verb}",
                json=body,
                headers=cw.holder.headers,
            )
            # two approvals at once (a double tap: each counts a password attempt until
            # checked), eight denials
            for verb, body in [("approve", {"password": HOLDER_PASSWORD})] * 2 + [("deny", {})] * 8
        )
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {
        "consent_already_answered"
    }
    await cw.settle()
    rows = await LedgerEntry.select(LedgerEntry.event).order_by(LedgerEntry.seq)
    assert rows[0]["event"] == "requested" and len(rows) == 2  # one answer on the ledger


async def test_an_access_after_the_revocation_fails(cw: ConsentWorld) -> None:
    grant_id = await cw.granted()

    async def revoke() -> float:
        response = await cw.client.post(
            f"/holder/v1/consent/grants/{grant_id}/revoke", headers=cw.holder.headers
        )
        assert response.status_code == 200
        return asyncio.get_running_loop().time()

    async def read() -> tuple[float, float, int]:
        started = asyncio.get_running_loop().time()
        response = await cw.read(grant_id)
        return started, asyncio.get_running_loop().time(), response.status_code

    results = await asyncio.gather(
        *(read() for _ in range(6)), revoke(), *(read() for _ in range(6))
    )
    revoked_at = results[6]
    reads = [r for r in results if isinstance(r, tuple)]
    assert all(code in (200, 403) for _, _, code in reads)
    assert all(code == 403 for started, _, code in reads if started > revoked_at)
    assert (await cw.read(grant_id)).status_code == 403
    await cw.settle()
    events = [
        decode_leaf(bytes(r["leaf"])).body.event
        for r in await LedgerEntry.select().order_by(LedgerEntry.seq)
    ]
    assert (
        Event.ACCESSED not in events[events.index(Event.REVOKED) :]
    )  # no access after it on the ledger
    served = sum(1 for _, _, code in reads if code == 200)
    assert events.count(Event.ACCESSED) == served


async def test_idempotent_request_creation(cw: ConsentWorld) -> None:
    body = {
        "holder": {"identity_number": cw.holder.person["identity_number"]},
        "scopes": ["card.status"],
        "purpose_code": "medical_service",
        "duration_seconds": DAY,
    }
    headers = {**cw.rp_headers, "Idempotency-Key": "consent-req-0001"}
    first = await cw.client.post("/consent/v1/requests", json=body, headers=headers)
    second = await cw.client.post("/consent/v1/requests", json=body, headers=headers)
    assert (
        first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]
    )
    assert (
        len((await cw.client.get("/holder/v1/consent/requests", headers=cw.holder.headers)).json())
        == 1
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "holder": json_values | st.fixed_dictionaries({"identity_number": st.text(max_size=25)}),
        "scopes": json_values
        | st.lists(st.sampled_from(["card.status", "identity.basic", "x", ""]), max_size=5),
        "purpose_code": json_values | st.sampled_from(["other", "loan_application"]),
        "purpose": json_values,
        "duration_seconds": json_values | st.integers(min_value=-(2**70), max_value=2**70),
        "recipient": json_values,
    },
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=request_like)
async def test_arbitrary_request_bodies_never_cause_a_server_error(
    cw: ConsentWorld, body: dict
) -> None:
    response = await cw.client.post("/consent/v1/requests", json=body, headers=cw.rp_headers)
    assert response.status_code in (201, 400, 403), response.text
    assert response.headers["content-type"].startswith(
        "application/json" if response.status_code == 201 else "application/problem+json"
    )


fields = st.fixed_dictionaries(
    {
        "id": st.text(max_size=8),
        "relying_party": st.text(max_size=8),
        "person": st.none() | st.text(max_size=8),
        "requested_scopes": st.lists(st.text(max_size=6), max_size=3),
        "purpose_code": st.text(max_size=6),
        "purpose": st.text(max_size=8),
        "recipient": st.text(max_size=8),
        "duration_seconds": st.integers(0, 10**9),
        "created_ms": st.integers(0, 2**62),
    }
)


@given(a=fields, b=fields)
def test_canonical_form_is_deterministic_and_tells_consents_apart(a: dict, b: dict) -> None:
    import msgspec

    assert canonical_bytes(a) == canonical_bytes(dict(a))
    decoded = msgspec.json.decode(canonical_bytes(a), type=CanonicalConsent)
    assert decoded.scopes == sorted(a["requested_scopes"]) and decoded.person == a["person"]
    if {**a, "requested_scopes": sorted(a["requested_scopes"])} != {
        **b,
        "requested_scopes": sorted(b["requested_scopes"]),
    }:
        assert canonical_bytes(a) != canonical_bytes(b)
