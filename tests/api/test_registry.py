"""The cardholder registry through its HTTP API, on both storage backends."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from ecard.offline.package import card_reference
from ecard.registry.tables import AuditEvent, Card, Person
from ecard.registry.visibility import mask_identity_number_for_operators
from ecard.terminal.card_model import chip_identification_code
from tests.helpers import World, basic, bearer, identity_number


async def test_person_identity_number_is_encrypted_at_rest_and_masked_for_lesser_roles(
    world: World,
) -> None:
    holder = await world.person_with_card()
    full = await world.client.get(
        f"/operator/v1/persons/{holder['person_id']}", headers=world.op("registry_admin")
    )
    assert full.json()["identity_number"] == holder["identity_number"]
    masked = await world.client.get(
        f"/operator/v1/persons/{holder['person_id']}", headers=world.op("readonly")
    )
    assert masked.json()["identity_number"] == mask_identity_number_for_operators(
        holder["identity_number"]
    )
    assert (
        masked.json()["identity_number"] == holder["identity_number"][:6] + "*" * 12
    )  # no birth date, no check digit
    assert masked.json()["name"] == "张*三"
    assert "birth_date" not in masked.json() and "ethnicity" not in masked.json()
    row = await Person.select().where(Person.id == holder["person_id"]).first()
    assert holder["identity_number"].encode() not in bytes(row["id_number_enc"])


async def test_search_finds_a_person_by_identity_number_through_the_blind_index(
    world: World,
) -> None:
    holder = await world.person_with_card()
    await world.person_with_card(name="李四")
    found = await world.client.get(
        "/operator/v1/persons",
        params={"identity_number": holder["identity_number"]},
        headers=world.op(),
    )
    assert found.status_code == 200
    assert [p["id"] for p in found.json()["items"]] == [holder["person_id"]]
    page = await world.client.get("/operator/v1/persons", params={"limit": 1}, headers=world.op())
    assert page.json()["total"] == 2 and len(page.json()["items"]) == 1


async def test_a_broad_search_counts_up_to_a_cap_and_says_when_its_total_is_a_lower_bound(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region of millions is not counted row by row on every page: past ``COUNT_CAP`` matches
    after the offset the total is a lower bound (``total_exact`` false)."""
    from ecard.registry import service

    monkeypatch.setattr(service, "COUNT_CAP", 3)
    for _ in range(5):
        await world.person_with_card(region="440000")

    async def page(**params: int) -> dict:
        response = await world.client.get(
            "/operator/v1/persons", params={"region": "440000", **params}, headers=world.op()
        )
        assert response.status_code == 200, response.text
        return response.json()

    first = await page(limit=2)
    assert (first["total"], first["total_exact"], len(first["items"])) == (3, False, 2)
    near_end = await page(limit=2, offset=2)
    assert (near_end["total"], near_end["total_exact"]) == (5, True)
    past_end = await page(limit=2, offset=9)
    assert (past_end["total"], past_end["total_exact"], past_end["items"]) == (5, True, [])


async def test_malformed_identity_numbers_and_duplicates_are_refused(world: World) -> None:
    valid = identity_number()
    wrong_check_digit = valid[:17] + ("0" if valid[17] != "0" else "1")
    bad = await world.client.post(
        "/operator/v1/persons",
        json={
            "name": "王五",
            "gender": "1",
            "identity_number": wrong_check_digit,
            "region": "330000",
        },
        headers=world.op(),
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_identity_number"
    assert bad.headers["content-type"].startswith("application/problem+json")
    holder = await world.person_with_card()
    again = await world.client.post(
        "/operator/v1/persons",
        json={
            "name": "王五",
            "gender": "1",
            "identity_number": holder["identity_number"],
            "region": "330000",
        },
        headers=world.op(),
    )
    assert again.status_code == 409 and again.json()["code"] == "person_exists"


async def test_unknown_region_codes_are_refused(world: World) -> None:
    response = await world.client.post(
        "/operator/v1/persons",
        json={
            "name": "王五",
            "gender": "1",
            "identity_number": identity_number("990000"),
            "region": "990000",
        },
        headers=world.op(),
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_region_code"


async def test_card_status_follows_only_allowed_transitions_and_is_audited(world: World) -> None:
    holder = await world.person_with_card()
    path = f"/operator/v1/cards/{holder['card_id']}/status"
    lost = await world.client.post(
        path, json={"status": "lost", "reason": "holder called 12333"}, headers=world.op()
    )
    assert lost.status_code == 200 and lost.json()["status"] == "lost"
    back = await world.client.post(
        path, json={"status": "active", "reason": "found it"}, headers=world.op()
    )
    assert back.json()["status"] == "active"
    cancelled = await world.client.post(
        path, json={"status": "cancelled", "reason": "replaced"}, headers=world.op()
    )
    assert cancelled.json()["status"] == "cancelled"
    revive = await world.client.post(
        path, json={"status": "active", "reason": "oops"}, headers=world.op()
    )
    assert revive.status_code == 409 and revive.json()["code"] == "invalid_status_transition"

    history = await world.client.get(
        f"/operator/v1/cards/{holder['card_id']}/history", headers=world.op()
    )
    assert [e["to_status"] for e in history.json()] == ["active", "lost", "active", "cancelled"]
    assert history.json()[1]["reason"] == "holder called 12333"
    assert history.json()[1]["actor"].startswith("operator:")

    trail = await world.client.get(
        "/operator/v1/audit", params={"target_id": holder["card_id"]}, headers=world.op("auditor")
    )
    assert trail.status_code == 200
    assert [e["action"] for e in trail.json()["items"]].count("card.status") == 3


async def test_concurrent_status_changes_exactly_one_wins(world: World) -> None:
    holder = await world.person_with_card()
    path = f"/operator/v1/cards/{holder['card_id']}/status"
    results = await asyncio.gather(
        *[
            world.client.post(
                path,
                json={"status": status, "reason": "race", "expected_version": 1},
                headers=world.op(),
            )
            for status in ("lost", "frozen", "cancelled", "lost")
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, [r.text for r in results]
    assert all(
        r.json()["code"] in {"status_changed_concurrently", "invalid_status_transition"}
        for r in results
        if r.status_code == 409
    )


async def test_a_second_in_use_card_for_one_person_is_refused(world: World) -> None:
    holder = await world.person_with_card()
    response = await world.client.post(
        "/operator/v1/cards",
        json={
            "person_id": holder["person_id"],
            "card_number": "C0000000001",
            "region": "330000",
            "chip_serial": "ABCDEF0123456789",
            "identification_code": "ABCDEF0123456789ABCDEF01",
            "issue_date": "2024-01-01",
            "expiry_date": "2034-01-01",
        },
        headers=world.op(),
    )
    assert response.status_code == 409 and response.json()["code"] == "card_already_active"


async def test_roles_have_least_privilege(world: World) -> None:
    holder = await world.person_with_card()
    for role in ("auditor", "readonly"):
        response = await world.client.post(
            f"/operator/v1/cards/{holder['card_id']}/status",
            json={"status": "lost", "reason": "x"},
            headers=world.op(role),
        )
        assert response.status_code == 403 and response.json()["code"] == "forbidden"
    audit = await world.client.get("/operator/v1/audit", headers=world.op("readonly"))
    assert audit.status_code == 403
    clients = await world.client.post(
        "/operator/v1/clients",
        json={"kind": "channel", "name": "x"},
        headers=world.op("registry_admin"),
    )
    assert clients.status_code == 403
    anonymous = await world.client.get("/operator/v1/persons")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    forged = await world.client.get("/operator/v1/persons", headers=bearer("ecop_forged"))
    assert forged.status_code == 401 and forged.json()["code"] == "token_invalid"


async def test_wrong_passwords_are_refused_and_rate_limited(world: World) -> None:
    codes = []
    for _ in range(12):
        response = await world.client.post(
            "/operator/v1/login", json={"username": "nobody", "password": "guess"}
        )
        codes.append(response.json()["code"])
    assert codes[0] == "invalid_credentials"
    assert codes[-1] == "rate_limited"


async def test_creating_posts_are_idempotent_with_an_idempotency_key(world: World) -> None:
    body = {"name": "赵六", "gender": "2", "identity_number": identity_number(), "region": "330000"}
    headers = {**world.op(), "Idempotency-Key": "create-zhao-liu-1"}
    first = await world.client.post("/operator/v1/persons", json=body, headers=headers)
    second = await world.client.post("/operator/v1/persons", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    other = await world.client.post(
        "/operator/v1/persons", json={**body, "name": "赵七"}, headers=headers
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


async def test_every_card_carries_its_chip_reference_and_older_cards_get_it_by_migration(
    world: World,
) -> None:
    """Offline records and the chip blacklist name a card by this digest; uploads look it up by
    index."""
    migration = importlib.import_module(
        "ecard.registry.piccolo_migrations.registry_2026_11_29t07_07_31_000000"
    )
    holder = await world.person_with_card()
    row = await Card.select().where(Card.id == holder["card_id"]).first()
    expected = card_reference(chip_identification_code(row["region"], row["identification_code"]))
    assert row["chip_reference"] == expected

    await Card.update({Card.chip_reference: None}).where(
        Card.id == holder["card_id"]
    )  # as before the column
    await migration.backfill()
    assert (await Card.select(Card.chip_reference).where(Card.id == holder["card_id"]).first())[
        "chip_reference"
    ] == expected


async def test_lesser_roles_may_not_search_by_identity_number_or_name_and_the_attempt_is_audited(
    world: World,
) -> None:
    holder = await world.person_with_card()
    for role in ("auditor", "readonly"):
        for params in (
            {"identity_number": holder["identity_number"]},
            {"name": holder["name"]},
            {"name": holder["name"], "region": "330000"},
        ):
            response = await world.client.get(
                "/operator/v1/persons", params=params, headers=world.op(role)
            )
            assert response.status_code == 403 and response.json()["code"] == "forbidden", (
                response.text
            )
            assert response.headers["content-type"].startswith("application/problem+json")
        # a malformed number gets the same refusal: the role may not probe the validator either
        malformed = await world.client.get(
            "/operator/v1/persons", params={"identity_number": "1"}, headers=world.op(role)
        )
        assert malformed.status_code == 403 and malformed.json()["code"] == "forbidden"
        by_region = await world.client.get(
            "/operator/v1/persons", params={"region": "330000"}, headers=world.op(role)
        )
        assert by_region.status_code == 200
    refused = await AuditEvent.select().where(AuditEvent.action == "person.search.refused")
    assert len(refused) == 8
    assert all(
        holder["identity_number"] not in r["detail"] and holder["name"] not in r["detail"]
        for r in refused
    )
    for role in ("admin", "registry_admin"):
        found = await world.client.get(
            "/operator/v1/persons", params={"name": holder["name"]}, headers=world.op(role)
        )
        assert found.status_code == 200 and [p["id"] for p in found.json()["items"]] == [
            holder["person_id"]
        ]


async def test_a_channel_outside_the_cards_region_learns_nothing_about_the_match_and_is_audited(
    world: World,
) -> None:
    beijing_only = await world.new_client("channel", regions=["110000"])
    headers = basic(beijing_only["client_id"], beijing_only["client_secret"])
    holder = await world.person_with_card()  # a 330000 card
    right = {k: holder[k] for k in ("name", "identity_number", "card_number")}
    wrong_name = {**right, "name": "李四"}
    wrong_number = {**right, "identity_number": identity_number()}
    answers = []
    for body in (right, wrong_name, wrong_number):
        response = await world.client.post("/channel/v1/ecards", json=body, headers=headers)
        answers.append(
            (response.status_code, response.json()["code"], response.json().get("detail"))
        )
    assert answers == [(403, "channel_region_not_served", None)] * 3, answers
    refusals = await AuditEvent.select().where(
        (AuditEvent.action == "ecard.issue.refused")
        & (AuditEvent.actor_id == beijing_only["client_id"])
    )
    assert [(r["target_id"], r["reason"]) for r in refusals] == [
        (holder["card_id"], "region not served")
    ] * 3
    # an unknown card number is a plain mismatch, as for any channel; a serving channel issues
    unknown = await world.client.post(
        "/channel/v1/ecards", json={**right, "card_number": "CNOSUCHCARD"}, headers=headers
    )
    assert unknown.status_code == 403 and unknown.json()["code"] == "identity_mismatch"
    assert (await world.issue(holder))["ecard"]["id"]
