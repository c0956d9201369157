"""Stock cards (库存卡): a batch is made for an outlet, delivered, handed over and activated; a bad
card refuses the whole batch; a person who holds a card gets a stock card only by a replacement."""

from __future__ import annotations

import pytest

from tests.helpers import World
from tests.lifecycle_ops.conftest import new_batch, new_person, stock_card


async def status_of(world: World, card_id: str) -> str:
    response = await world.client.get(f"/operator/v1/cards/{card_id}", headers=world.op())
    assert response.status_code == 200, response.text
    return response.json()["status"]


async def test_a_batch_is_made_delivered_handed_over_and_activated(world: World) -> None:
    first, second = await new_person(world), await new_person(world)
    batch = await new_batch(
        world, [stock_card(first["person_id"]), stock_card(second["person_id"])]
    )
    assert (
        batch["status"] == "produced"
        and batch["card_count"] == 2
        and batch["counts"] == {"produced": 2}
    )
    one, two = batch["card_ids"]

    read = await world.client.get(
        f"/operator/v1/card-batches/{batch['id']}", headers=world.op("readonly")
    )
    assert read.status_code == 200 and read.json()["counts"] == {"produced": 2}

    delivered = await world.client.post(
        f"/operator/v1/card-batches/{batch['id']}/deliver", headers=world.op()
    )
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "delivered" and delivered.json()["counts"] == {
        "in_stock": 2
    }
    assert delivered.json()["delivered_at"]

    handed = await world.client.post(f"/operator/v1/cards/{one}/hand-over", headers=world.op())
    assert handed.status_code == 200, handed.text
    assert handed.json()["status"] == "issued"
    activated = await world.client.post(
        f"/operator/v1/cards/{one}/activate", json={"note": "窗口启用"}, headers=world.op()
    )
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"
    # 立等可取: straight from the outlet's stock to active
    at_once = await world.client.post(f"/operator/v1/cards/{two}/activate", headers=world.op())
    assert at_once.status_code == 200, at_once.text
    assert at_once.json()["status"] == "active"

    history = await world.client.get(f"/operator/v1/cards/{one}/history", headers=world.op())
    assert [(e["from_status"], e["to_status"]) for e in history.json()] == [
        (None, "produced"),
        ("produced", "in_stock"),
        ("in_stock", "issued"),
        ("issued", "active"),
    ]
    final = await world.client.get(f"/operator/v1/card-batches/{batch['id']}", headers=world.op())
    assert final.json()["counts"] == {"active": 2}
    # delivering again changes nothing
    again = await world.client.post(
        f"/operator/v1/card-batches/{batch['id']}/deliver", headers=world.op()
    )
    assert again.status_code == 200 and again.json()["counts"] == {"active": 2}


async def test_a_bad_card_refuses_the_whole_batch_naming_it_by_index(world: World) -> None:
    good = await new_person(world)
    holder = await world.person_with_card()
    first = stock_card(good["person_id"])
    cards = [
        first,
        stock_card("0" * 32),  # no such person
        stock_card(good["person_id"], card_number=first["card_number"], expiry_date="2026-10-01"),
        stock_card(holder["person_id"], card_number=holder["card_number"]),  # a number in use
    ]
    refused = await world.client.post(
        "/operator/v1/card-batches",
        json={"outlet": "网点A", "region": "330000", "cards": cards},
        headers=world.op(),
    )
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert problem["code"] == "card_batch_invalid"
    assert {(e["index"], e["field"], e["code"]) for e in problem["errors"]} == {
        (1, "person_id", "person_not_found"),
        (2, "expiry_date", "expiry_not_after_issue"),
        (2, "person_id", "duplicate_person"),
        (2, "card_number", "duplicate_card_number"),
        (3, "card_number", "card_number_taken"),
    }
    # nothing was written, not even the good card
    cards_of_good = await world.client.get(
        f"/operator/v1/cards?person_id={good['person_id']}", headers=world.op()
    )
    assert cards_of_good.json()["total"] == 0

    # a person has one stock card at most
    await new_batch(world, [first])
    again = await world.client.post(
        "/operator/v1/card-batches",
        json={"outlet": "网点A", "region": "330000", "cards": [stock_card(good["person_id"])]},
        headers=world.op(),
    )
    assert again.status_code == 400
    assert again.json()["errors"] == [
        {"index": 0, "field": "person_id", "code": "stock_card_exists"}
    ]


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
async def test_a_batch_is_bounded_and_its_region_checked(world: World) -> None:
    person = await new_person(world)
    too_many = [stock_card(person["person_id"]) for _ in range(1001)]
    refused = await world.client.post(
        "/operator/v1/card-batches",
        json={"outlet": "网点A", "region": "330000", "cards": too_many},
        headers=world.op(),
    )
    assert refused.status_code == 400 and refused.json()["code"] == "validation_failed"
    region = await world.client.post(
        "/operator/v1/card-batches",
        json={"outlet": "网点A", "region": "990000", "cards": [stock_card(person["person_id"])]},
        headers=world.op(),
    )
    assert region.status_code == 400 and region.json()["code"] == "invalid_region_code"
    unknown = await world.client.get("/operator/v1/card-batches/" + "0" * 32, headers=world.op())
    assert unknown.status_code == 404 and unknown.json()["code"] == "card_batch_not_found"
    deliver_unknown = await world.client.post(
        "/operator/v1/card-batches/" + "0" * 32 + "/deliver", headers=world.op()
    )
    assert deliver_unknown.status_code == 404


async def test_a_stock_card_moves_only_along_its_steps(world: World) -> None:
    person = await new_person(world)
    batch = await new_batch(world, [stock_card(person["person_id"])])
    (card,) = batch["card_ids"]
    not_delivered = await world.client.post(
        f"/operator/v1/cards/{card}/hand-over", headers=world.op()
    )
    assert (
        not_delivered.status_code == 409
        and not_delivered.json()["code"] == "invalid_status_transition"
    )
    not_delivered = await world.client.post(
        f"/operator/v1/cards/{card}/activate", headers=world.op()
    )
    assert (
        not_delivered.status_code == 409
        and not_delivered.json()["code"] == "invalid_status_transition"
    )
    readonly = await world.client.post(
        f"/operator/v1/card-batches/{batch['id']}/deliver", headers=world.op("readonly")
    )
    assert readonly.status_code == 403
    assert await status_of(world, card) == "produced"


async def test_a_person_holding_a_card_gets_the_stock_card_by_a_replacement_only(
    world: World,
) -> None:
    holder = await world.person_with_card()
    batch = await new_batch(world, [stock_card(holder["person_id"])])
    (stock,) = batch["card_ids"]
    await world.client.post(f"/operator/v1/card-batches/{batch['id']}/deliver", headers=world.op())

    refused = await world.client.post(f"/operator/v1/cards/{stock}/activate", headers=world.op())
    assert refused.status_code == 409 and refused.json()["code"] == "card_already_active"
    assert await status_of(world, stock) == "in_stock"
    assert await status_of(world, holder["card_id"]) == "active"

    requested = await world.client.post(
        f"/operator/v1/cards/{holder['card_id']}/replacement-request",
        json={"reason": "damaged"},
        headers=world.op(),
    )
    assert requested.status_code == 200, requested.text
    replaced = await world.client.post(
        f"/operator/v1/cards/{holder['card_id']}/replace",
        json={"stock_card_id": stock},
        headers=world.op(),
    )
    assert replaced.status_code == 201, replaced.text
    assert await status_of(world, stock) == "active"
    assert await status_of(world, holder["card_id"]) == "replaced"
