"""Fixtures of the timeline tests: the service on both backends (from tests/api), holders whose
card fits the chip (so terminals can accept it offline), verifiers, and helpers that read the
timeline page by page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.helpers import World, basic, bearer, identity_number


@dataclass
class Holder:
    person: dict[str, str]  # name, identity_number, card_number, person_id, card_id
    ecard_id: str
    access_token: str
    refresh_token: str

    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def new_card(w: World, person_id: str, region: str = "330000") -> dict[str, str]:
    """A card for ``person_id`` whose number fits the chip model (9 characters)."""
    card_number = "A" + uuid.uuid4().hex[:8].upper()
    card = await w.client.post(
        "/operator/v1/cards",
        json={
            "person_id": person_id,
            "card_number": card_number,
            "region": region,
            "chip_serial": uuid.uuid4().hex[:16].upper(),
            "identification_code": uuid.uuid4().hex[:24].upper(),
            "issue_date": "2024-01-01",
            "expiry_date": "2034-01-01",
        },
        headers=w.op(),
    )
    assert card.status_code == 201, card.text
    return {"card_number": card_number, "card_id": card.json()["id"]}


async def new_holder(w: World, name: str = "王小五", region: str = "330000") -> Holder:
    """A person with one card and an e-card session in the world's channel app."""
    number = identity_number(region)
    person = await w.client.post(
        "/operator/v1/persons",
        json={"name": name, "gender": "1", "identity_number": number, "region": region},
        headers=w.op(),
    )
    assert person.status_code == 201, person.text
    details = {"name": name, "identity_number": number, "person_id": person.json()["id"]}
    details |= await new_card(w, details["person_id"], region)
    issued = await w.issue(details)
    session = issued["session"]
    return Holder(details, issued["ecard"]["id"], session["access_token"], session["refresh_token"])


async def new_verifier(w: World, name: str) -> dict[str, str]:
    return await w.new_client("verifier", name=name, entitlements=["masked_name", "card_status"])


async def verify_a_code(
    http: httpx.AsyncClient, holder: Holder, verifier: dict[str, str], *, reuse: str | None = None
) -> str:
    """The holder shows a fresh code (or ``reuse``) and the verifier checks it online; the code."""
    code = reuse
    if code is None:
        issued = await http.post("/holder/v1/codes", headers=holder.headers())
        assert issued.status_code == 201, issued.text
        code = issued.json()["code"]
    verified = await http.post(
        "/verifier/v1/verifications",
        json={"code": code},
        headers=basic(verifier["client_id"], verifier["client_secret"]),
    )
    assert verified.status_code == 200, verified.text
    return code


async def timeline_page(http: httpx.AsyncClient, holder: Holder, **params: Any) -> httpx.Response:
    return await http.get("/holder/v1/timeline", params=params, headers=holder.headers())


async def whole_timeline(
    http: httpx.AsyncClient, holder: Holder, limit: int
) -> tuple[list[dict], int]:
    """Every item, read ``limit`` at a time following ``next``; and how many pages it took."""
    items: list[dict] = []
    before: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"before": before} if before else {})
        response = await timeline_page(http, holder, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit and body["limit"] == limit
        items += body["items"]
        pages += 1
        before = body["next"]
        if before is None:
            return items, pages
        assert len(body["items"]) == limit  # only a full page has a next one
