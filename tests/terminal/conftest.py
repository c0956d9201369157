"""Fixtures of the terminal tests."""

from __future__ import annotations

import pytest

from ecard.terminal import psam
from ecard.terminal.virtual_card import VirtualCard
from tests.terminal.helpers import FACTS, MASTERS, CountingRandom


@pytest.fixture()
def card() -> VirtualCard:
    keys = psam.derive_card_keys(MASTERS, FACTS.card_identification_code)
    return VirtualCard(FACTS, keys, random_bytes=CountingRandom())
