"""Fixtures of the terminal service tests: the service on both backends (from tests/api), a
registry card whose chip is a virtual card, terminals with their own keys, and the reference
terminal wired to the app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.es256 import public_jwk
from ecard.terminal.reference import ReferenceTerminal
from ecard.terminal.service import TerminalService, issuer_master_keys
from ecard.terminal.virtual_card import VirtualCard
from tests.helpers import World, identity_number, platform_of

HOSPITAL = ["card_status", "masked_name", "card_personal_data"]
PHARMACY = ["card_status"]


@dataclass
class RegistryCard:
    card_id: str
    person: dict[str, str]


@dataclass
class RegisteredTerminal:
    id: str
    key: ec.EllipticCurvePrivateKey


async def registry_card(world: World, region: str = "330000", name: str = "李四") -> RegistryCard:
    """A person and a card whose number fits the chip (9 characters)."""
    number = identity_number(region)
    person = await world.client.post(
        "/operator/v1/persons",
        json={"name": name, "gender": "2", "identity_number": number, "region": region},
        headers=world.op(),
    )
    assert person.status_code == 201, person.text
    card_number = "A" + uuid.uuid4().hex[:8].upper()
    card = await world.client.post(
        "/operator/v1/cards",
        json={
            "person_id": person.json()["id"],
            "card_number": card_number,
            "region": region,
            "chip_serial": uuid.uuid4().hex[:16].upper(),
            "identification_code": uuid.uuid4().hex[:24].upper(),
            "issue_date": "2024-01-01",
            "expiry_date": "2034-01-01",
        },
        headers=world.op(),
    )
    assert card.status_code == 201, card.text
    return RegistryCard(
        card.json()["id"], {"name": name, "identity_number": number, "card_number": card_number}
    )


async def register_terminal(
    world: World, entitlements: list[str], region: str = "330000"
) -> RegisteredTerminal:
    key = ec.generate_private_key(ec.SECP256R1())
    response = await world.client.post(
        "/operator/v1/terminals/",
        json={
            "name": f"terminal-{uuid.uuid4().hex[:8]}",
            "institution": "杭州市第一人民医院",
            "terminal_kind": "hospital",
            "address": "浙江省杭州市上城区浣纱路261号",
            "region": region,
            "public_jwk": public_jwk(key.public_key()),
            "entitlements": entitlements,
        },
        headers=world.op(),
    )
    assert response.status_code == 201, response.text
    return RegisteredTerminal(response.json()["id"], key)


def service_of(http: httpx.AsyncClient) -> TerminalService:
    from ecard.codes.service import CodeService

    return TerminalService(platform_of(http), CodeService(platform_of(http)))


async def chip_of(http: httpx.AsyncClient, card: RegistryCard, **options: object) -> VirtualCard:
    return await service_of(http).virtual_card(card.card_id, **options)


def reference_terminal(
    http: httpx.AsyncClient, terminal: RegisteredTerminal, **options: object
) -> ReferenceTerminal:
    ring = platform_of(http).keys.ring
    return ReferenceTerminal(
        terminal.id,
        terminal.key,
        http,
        ring.root.public_key(),
        psam_keys={region: issuer_master_keys(ring, region) for region in ring.regions()},
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture()
async def hospital(world: World) -> RegisteredTerminal:
    return await register_terminal(world, HOSPITAL)


@pytest.fixture()
async def card(world: World) -> RegistryCard:
    return await registry_card(world)
