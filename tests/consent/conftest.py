"""Fixtures of the consent tests: the service on both backends (from tests/api), a relying party
entitled to every scope, and a holder with demo registry data and an app session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from ecard.consent.ledger_bridge import consent_ledger, drain
from ecard.consent.scopes import SCOPES
from ecard.consent.service import seed_demo_data
from tests.helpers import HOLDER_PASSWORD, World, basic, bearer, platform_of

ALL_SCOPES = list(SCOPES)
DAY = 86_400


@dataclass
class Holder:
    person: dict[str, str]
    headers: dict[str, str]


@dataclass
class ConsentWorld:
    world: World
    client: AsyncTestClient
    rp: dict[str, str]
    holder: Holder

    @property
    def rp_headers(self) -> dict[str, str]:
        return basic(self.rp["client_id"], self.rp["client_secret"])

    async def new_holder(self, name: str = "李小四") -> Holder:
        person = await self.world.person_with_card(name)
        await seed_demo_data(platform_of(self.client), person["person_id"])
        issued = await self.world.issue(person)
        return Holder(person, bearer(issued["session"]["access_token"]))

    async def ask(
        self, who: Holder | None = None, *, rp: dict[str, str] | None = None, **overrides: Any
    ) -> Any:
        body = {
            "holder": {"identity_number": (who or self.holder).person["identity_number"]},
            "scopes": ["card.status", "insurance.enrollment"],
            "purpose_code": "loan_application",
            "purpose": "个人消费贷款审核",
            "duration_seconds": 30 * DAY,
            **overrides,
        }
        headers = basic(rp["client_id"], rp["client_secret"]) if rp else self.rp_headers
        return await self.client.post("/consent/v1/requests", json=body, headers=headers)

    async def granted(
        self, holder: Holder | None = None, approve: list[str] | None = None, **overrides: Any
    ) -> str:
        """A request approved by the holder (all scopes, or ``approve``); returns the grant id."""
        holder = holder or self.holder
        created = await self.ask(holder, **overrides)
        assert created.status_code == 201, created.text
        grant_id = created.json()["id"]
        answer = await self.client.post(
            f"/holder/v1/consent/requests/{grant_id}/approve",
            json={"password": HOLDER_PASSWORD}
            if approve is None
            else {"scopes": approve, "password": HOLDER_PASSWORD},
            headers=holder.headers,
        )
        assert answer.status_code == 200, answer.text
        return grant_id

    async def read(self, grant_id: str, *scopes: str, rp: dict[str, str] | None = None) -> Any:
        headers = basic(rp["client_id"], rp["client_secret"]) if rp else self.rp_headers
        return await self.client.get(
            f"/consent/v1/grants/{grant_id}/data", params={"scope": list(scopes)}, headers=headers
        )

    async def settle(self) -> None:
        """Relay the outbox and seal, as the background workers do within a second."""
        platform = platform_of(self.client)
        await drain(platform)
        await (await consent_ledger(platform)).seal()


@pytest.fixture()
async def cw(world: World, client: AsyncTestClient) -> ConsentWorld:
    rp = await world.new_client("relying_party", name="某银行 (a bank)", entitlements=ALL_SCOPES)
    consent_world = ConsentWorld(world, client, rp, Holder({}, {}))
    consent_world.holder = await consent_world.new_holder("张小三")
    return consent_world
