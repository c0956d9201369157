"""Fixtures of the front-door tests (实人 evidence at issuance, the 电子社保卡密码 and its step-up):
the service on both backends and its actors (from tests/api), the consent world (tests/consent)
and a clock the password lockout and the evidence checks read, moved by hand."""

from __future__ import annotations

import time

import pytest

from ecard.registry import evidence, holder_password
from tests.consent.conftest import cw  # noqa: F401 - defined by tests/consent, shared with it


class Clock:
    """The platform's clock for the front door, moved by tests instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(holder_password, "clock", made)
    monkeypatch.setattr(evidence, "clock", made)
    return made
