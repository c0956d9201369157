"""Fixtures of the stock-card and death-record tests: the service on both backends (from tests/api)
and helpers to make persons and batches."""

from __future__ import annotations

import uuid

from tests.helpers import World, identity_number


async def new_person(world: World, region: str = "330000", name: str = "王小五") -> dict[str, str]:
    """A person of the registry without a card."""
    number = identity_number(region)
    response = await world.client.post(
        "/operator/v1/persons",
        json={"name": name, "gender": "2", "identity_number": number, "region": region},
        headers=world.op(),
    )
    assert response.status_code == 201, response.text
    return {"person_id": response.json()["id"], "identity_number": number, "name": name}


def stock_card(person_id: str, **overrides: str) -> dict[str, str]:
    return {
        "person_id": person_id,
        "card_number": "S" + uuid.uuid4().hex[:10].upper(),
        "chip_serial": uuid.uuid4().hex[:16].upper(),
        "identification_code": uuid.uuid4().hex[:24].upper(),
        "issue_date": "2026-11-01",
        "expiry_date": "2036-11-01",
        **overrides,
    }


async def new_batch(
    world: World, cards: list[dict[str, str]], outlet: str = "330102-001 上城区社保服务网点"
) -> dict:
    response = await world.client.post(
        "/operator/v1/card-batches",
        json={"outlet": outlet, "region": "330000", "cards": cards},
        headers=world.op(),
    )
    assert response.status_code == 201, response.text
    return response.json()
