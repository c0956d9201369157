"""A card, its keys and its holder, shared by the terminal tests."""

from __future__ import annotations

import datetime as dt

from ecard.terminal import psam
from ecard.terminal.card_model import CardFacts
from ecard.terminal.virtual_card import VirtualCard

MASTERS = psam.MasterKeys(internal_auth=bytes(range(16)), external_auth=bytes(range(16, 32)))
FACTS = CardFacts(
    card_number="A12345678",
    card_identification_code="330300D15600000599110145FFFFFFFF",
    card_type="3",
    spec_version="3.00",
    issuing_org_code="330300000000",
    issue_date=dt.date(2020, 1, 2),
    expiry_date=dt.date(2030, 1, 2),
    social_security_number="33010619900307123X",
    name="张三",
    gender="1",
    ethnicity="01",
    birth_date=dt.date(1990, 3, 7),
    birth_place="330106",
)
SELECT_SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")


class CountingRandom:
    """Deterministic, distinct challenges."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        return self.calls.to_bytes(size, "big")


def send(card: VirtualCard, hex_command: str | bytes) -> tuple[bytes, int]:
    """Transmit and split the answer into (data, SW)."""
    raw = bytes.fromhex(hex_command) if isinstance(hex_command, str) else hex_command
    response = card.transmit(raw)
    return response[:-2], int.from_bytes(response[-2:], "big")
