"""The code route answered natively in RSGI (granian, ``ecard serve``) checks DPoP-bound tokens
as the Litestar routes do: a real server, a real client."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ecard.registry.evidence import sign_evidence
from tests.helpers import identity_number
from tests.holder_sessions.conftest import Device
from tests.live import LiveServer, Seeded, new_channel, seed

CODES = "/holder/v1/codes"


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, Seeded]]:
    server = LiveServer.start()
    try:
        yield server, asyncio.run(seed(server.url))
    finally:
        server.stop()


async def bound_holder(url: str, admin: dict[str, str], phone: Device) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        channel = await new_channel(http, admin)
        number = identity_number()
        person = (
            await http.post(
                "/operator/v1/persons",
                headers=admin,
                json={
                    "name": "张小三",
                    "gender": "1",
                    "identity_number": number,
                    "region": "330000",
                },
            )
        ).json()
        card_number = "C" + uuid.uuid4().hex[:10].upper()
        card = await http.post(
            "/operator/v1/cards",
            headers=admin,
            json={
                "person_id": person["id"],
                "card_number": card_number,
                "region": "330000",
                "chip_serial": uuid.uuid4().hex[:16].upper(),
                "identification_code": uuid.uuid4().hex[:24].upper(),
                "issue_date": "2024-01-01",
                "expiry_date": "2034-01-01",
            },
        )
        assert card.status_code == 201, card.text
        evidence = sign_evidence(
            channel["private_key_pem"],
            channel_id=channel["id"],
            audience=url,
            identity_number=number,
            method="face_liveness",
            reference=f"ref-{uuid.uuid4().hex[:12]}",
        )
        basic = base64.b64encode(f"{channel['id']}:{channel['client_secret']}".encode()).decode()
        issued = await http.post(
            "/channel/v1/ecards",
            headers={"Authorization": f"Basic {basic}"},
            json={
                "name": "张小三",
                "identity_number": number,
                "card_number": card_number,
                "evidence": evidence,
                "dpop_jkt": phone.jkt,
            },
        )
        assert issued.status_code == 201, issued.text
        return issued.json()["session"]


def test_the_native_code_route_checks_the_device_key(live: tuple[LiveServer, Seeded]) -> None:
    server, seeded = live
    phone = Device()
    session = asyncio.run(bound_holder(server.url, seeded.admin, phone))
    token = session["access_token"]
    assert session["token_type"] == "DPoP"
    url = server.url + CODES  # the server's ECARD_PUBLIC_URL is its own address
    proof = phone.proof("POST", url, token)
    ok = httpx.post(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert ok.status_code == 201, ok.text
    replayed = httpx.post(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert replayed.status_code == 401 and replayed.json()["code"] == "invalid_dpop_proof"
    assert replayed.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
    as_bearer = httpx.post(url, headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401 and as_bearer.json()["code"] == "token_invalid"
    no_proof = httpx.post(url, headers={"Authorization": f"DPoP {token}"})
    assert no_proof.status_code == 401 and no_proof.json()["code"] == "invalid_dpop_proof"
    thief = httpx.post(
        url, headers={"Authorization": f"DPoP {token}", "DPoP": Device().proof("POST", url, token)}
    )
    assert thief.status_code == 401 and thief.json()["code"] == "invalid_dpop_proof"
    two = httpx.post(
        url,
        headers=[
            ("Authorization", f"DPoP {token}"),
            ("DPoP", phone.proof("POST", url, token)),
            ("DPoP", phone.proof("POST", url, token)),
        ],
    )
    assert two.status_code == 401 and two.json()["code"] == "invalid_dpop_proof"
    again = httpx.post(
        url, headers={"Authorization": f"DPoP {token}", "DPoP": phone.proof("POST", url, token)}
    )
    assert again.status_code == 201, again.text
