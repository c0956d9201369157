"""实人 evidence at issuance: no evidence, no e-card.  A channel signs, with its registered key,
that it checked a live person just now, for this applicant; the platform checks every rule, spends
the evidence once and keeps a record of it (never the evidence itself, never personal data)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.registry.tables import AuditEvent, ECard, LivenessEvidence
from tests.front_door.conftest import Clock
from tests.helpers import World, basic, platform_of


def body(holder: dict[str, str], evidence: str | None) -> dict:
    made = {k: holder[k] for k in ("name", "identity_number", "card_number")}
    if evidence is not None:
        made["evidence"] = evidence
    return made


async def issue(
    world: World,
    holder: dict[str, str],
    evidence: str | None,
    channel: dict[str, str] | None = None,
):
    channel = channel or world.channel
    return await world.client.post(
        "/channel/v1/ecards",
        json=body(holder, evidence),
        headers=basic(channel["client_id"], channel["client_secret"]),
    )


async def nothing_written_for(holder: dict[str, str]) -> None:
    """No e-card and no evidence row for this card, and no issuance in the audit trail at all."""
    assert await ECard.count().where(ECard.card == holder["card_id"]) == 0
    assert await LivenessEvidence.count().where(LivenessEvidence.card == holder["card_id"]) == 0
    assert await AuditEvent.count().where(AuditEvent.action == "ecard.issue") == 0


async def test_issuance_without_evidence_is_refused(world: World) -> None:
    holder = await world.person_with_card()
    response = await issue(world, holder, None)
    assert response.status_code == 400 and response.json()["code"] == "evidence_required"
    empty = await issue(world, holder, "")
    assert empty.status_code == 400 and empty.json()["code"] == "evidence_required"
    await nothing_written_for(holder)


async def test_a_mismatch_still_answers_identity_mismatch_before_any_evidence_rule(
    world: World,
) -> None:
    holder = await world.person_with_card()
    response = await issue(world, {**holder, "name": "王二麻"}, None)
    assert response.status_code == 403 and response.json()["code"] == "identity_mismatch"


def _refusals(
    world: World, holder: dict[str, str], other: dict[str, str]
) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    stranger = {**world.channel, "private_key_pem": ec.generate_private_key(ec.SECP256R1())}
    return {
        "forged (another key)": (world.evidence_for(holder, stranger), "evidence_invalid"),
        "expired": (world.evidence_for(holder, checked_at=now - 301), "evidence_invalid"),
        "from the future": (world.evidence_for(holder, checked_at=now + 120), "evidence_invalid"),
        "another audience": (
            world.evidence_for(holder, audience="https://other.example.test"),
            "evidence_invalid",
        ),
        "another issuer": (
            world.evidence_for(holder, channel_id="ch_someone_else"),
            "evidence_invalid",
        ),
        "another person's subject": (world.evidence_for(other), "evidence_invalid"),
        "made for a password reset": (
            world.evidence_for(holder, purpose="password_reset"),
            "evidence_invalid",
        ),
        "an unknown method": (world.evidence_for(holder, method="horoscope"), "evidence_invalid"),
        "junk": ("not.a.jws", "evidence_invalid"),
        "a method the province does not accept": (
            world.evidence_for(holder, method="bank_card_4factor"),
            "evidence_method_not_accepted",
        ),
    }


async def test_bad_evidence_is_refused_with_its_code_and_nothing_is_written(world: World) -> None:
    holder = await world.person_with_card()
    other = await world.person_with_card("李四")
    for case, (evidence, code) in _refusals(world, holder, other).items():
        response = await issue(world, holder, evidence)
        assert response.status_code == 400, (case, response.text)
        problem = response.json()
        assert problem["code"] == code, (case, problem)
        # the reason is stable and says nothing about the person
        assert (
            holder["identity_number"] not in response.text and holder["name"] not in response.text
        ), case
        await nothing_written_for(holder)
    refused = await AuditEvent.select(AuditEvent.reason).where(
        (AuditEvent.action == "ecard.issue.refused") & (AuditEvent.target_id == holder["card_id"])
    )
    assert {r["reason"] for r in refused} == {"evidence_invalid", "evidence_method_not_accepted"}


async def test_the_cards_province_decides_which_methods_count(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = platform_of(world.client)
    policy = {"110000": ["counter_in_person"], "*": ["face_liveness"]}
    monkeypatch.setattr(
        platform, "settings", msgspec.structs.replace(platform.settings, liveness_methods=policy)
    )
    beijing = await world.person_with_card(region="110000")
    zhejiang = await world.person_with_card()
    refused = await issue(world, beijing, world.evidence_for(beijing, method="face_liveness"))
    assert refused.status_code == 400 and refused.json()["code"] == "evidence_method_not_accepted"
    await nothing_written_for(beijing)
    assert (
        await issue(world, beijing, world.evidence_for(beijing, method="counter_in_person"))
    ).status_code == 201
    assert (
        await issue(world, zhejiang, world.evidence_for(zhejiang, method="face_liveness"))
    ).status_code == 201
    counter = await issue(world, zhejiang, world.evidence_for(zhejiang, method="counter_in_person"))
    assert counter.status_code == 400 and counter.json()["code"] == "evidence_method_not_accepted"


async def test_evidence_is_used_once(world: World) -> None:
    holder = await world.person_with_card()
    evidence = world.evidence_for(holder)
    assert (await issue(world, holder, evidence)).status_code == 201
    replay = await issue(world, holder, evidence)
    assert replay.status_code == 400 and replay.json()["code"] == "evidence_invalid"
    assert "already used" in replay.json()["detail"]
    assert await LivenessEvidence.count().where(LivenessEvidence.card == holder["card_id"]) == 1
    # the store emptied (a Redis restart): the database still knows the evidence
    jti = jwt.decode(evidence, options={"verify_signature": False})["jti"]
    marker = (
        "evidence-jti:" + hashlib.sha256(f"{world.channel['client_id']}|{jti}".encode()).hexdigest()
    )
    assert await platform_of(world.client).store.delete(marker)
    after_restart = await issue(world, holder, evidence)
    assert after_restart.status_code == 400 and after_restart.json()["code"] == "evidence_invalid"
    assert await LivenessEvidence.count().where(LivenessEvidence.card == holder["card_id"]) == 1
    # a new check of the same person is fine (the same e-card, a new session)
    again = await issue(world, holder, world.evidence_for(holder))
    assert again.status_code == 201
    assert await LivenessEvidence.count().where(LivenessEvidence.card == holder["card_id"]) == 2


async def test_the_time_window_follows_the_platform_clock(world: World, clock: Clock) -> None:
    holder = await world.person_with_card()
    checked_at = int(clock.now)
    evidence = world.evidence_for(holder, checked_at=checked_at)
    clock.advance(301)
    stale = await issue(world, holder, evidence)
    assert stale.status_code == 400 and "older than 300" in stale.json()["detail"]
    clock.now = checked_at - 59  # the channel's clock runs a little fast: still fine
    assert (
        await issue(world, holder, world.evidence_for(holder, checked_at=checked_at))
    ).status_code == 201


async def test_a_channel_without_a_registered_key_cannot_issue(world: World) -> None:
    keyless = await world.new_client("channel", public_jwk=None)
    holder = await world.person_with_card()
    response = await issue(
        world, holder, world.evidence_for(holder, world.channel), channel=keyless
    )
    assert response.status_code == 403 and response.json()["code"] == "evidence_key_missing"
    await nothing_written_for(holder)


async def test_valid_evidence_issues_and_is_recorded_without_personal_data(world: World) -> None:
    holder = await world.person_with_card()
    reference = f"liveness-{uuid.uuid4().hex[:10]}"
    evidence = world.evidence_for(holder, method="face_compare_police", reference=reference)
    response = await issue(world, holder, evidence)
    assert response.status_code == 201, response.text
    ecard_id = response.json()["ecard"]["id"]
    [row] = await LivenessEvidence.select().where(LivenessEvidence.ecard == ecard_id)
    assert row["card"] == holder["card_id"] and row["channel"] == world.channel["client_id"]
    assert row["method"] == "face_compare_police" and row["purpose"] == "issuance"
    assert row["channel_reference"] == reference and abs(row["checked_at"] - time.time()) < 60
    assert row["jws_digest"] == hashlib.sha256(evidence.encode()).hexdigest()
    assert evidence not in json.dumps(row, default=str)
    [audit] = await AuditEvent.select().where(
        (AuditEvent.action == "ecard.issue") & (AuditEvent.target_id == ecard_id)
    )
    detail = audit["detail"] if isinstance(audit["detail"], dict) else json.loads(audit["detail"])
    assert detail["evidence"] == row["id"] and detail["method"] == "face_compare_police"
    text = json.dumps(audit, default=str, ensure_ascii=False)
    for personal in (
        holder["identity_number"],
        holder["name"],
        holder["card_number"],
        evidence,
        reference,
    ):
        assert personal not in text
