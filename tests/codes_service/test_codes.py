"""The holder fetches dynamic codes and the e-license; lifetimes, images and refusals."""

from __future__ import annotations

import io
import time

import zxingcpp
from PIL import Image

from ecard.edge import SERIES
from ecard.offline import RevocationSet, parse_code, verify, verify_elicense
from ecard.offline.revocation import build_revocation_list
from tests.codes_service.conftest import (
    Holder,
    Verifier,
    fetch_code,
    fetch_revocations,
    new_holder,
    present,
    report,
    trust_store,
)
from tests.helpers import World, platform_of


async def test_a_code_carries_its_lifetime_and_no_plaintext_personal_data(
    world: World, holder: Holder
) -> None:
    issued = await fetch_code(world.client, holder)
    lifetime = platform_of(world.client).settings.code_lifetime
    assert issued["expires_at"] - issued["issued_at"] == lifetime == issued["lifetime"]
    assert issued["issued_at"] < issued["refresh_at"] < issued["expires_at"]
    assert abs(issued["issued_at"] - time.time()) < 5
    claims = parse_code(issued["code"]).claims
    assert claims.masked_name == "张*三" and claims.card_last4 == holder.person["card_number"][-4:]
    assert claims.region == "330000" and len(claims.pseudonym) == 16
    for secret in (
        holder.person["name"],
        holder.person["identity_number"],
        holder.card_id,
        holder.person["card_number"],
    ):
        assert secret not in issued["code"]
        assert secret.encode() not in parse_code(issued["code"]).body
    # the pseudonym is stable per card, and every code is new
    again = parse_code((await fetch_code(world.client, holder))["code"])
    assert (
        again.claims.pseudonym == claims.pseudonym
        and again.code_id != parse_code(issued["code"]).code_id
    )


async def test_a_code_verifies_offline_with_the_published_trust_list(
    world: World, holder: Holder
) -> None:
    issued = await fetch_code(world.client, holder)
    now = int(time.time())
    no_revocations = RevocationSet.from_list(
        build_revocation_list([], version=1, issued_at=now, next_update=now + 60)
    )
    result = verify(issued["code"], await trust_store(world.client, now), no_revocations, now)
    assert result.ok, result.reason


async def test_the_png_decodes_to_a_code_that_verifies(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    response = await world.client.get(
        "/holder/v1/codes/qr", params={"scale": 4, "ec": "Q"}, headers=holder.headers()
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"].startswith("no-store")
    assert int(response.headers["x-code-expires-at"]) > time.time()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(response.content)))
    assert len(decoded) == 1 and decoded[0].text.startswith("EC1:")
    result = await present(world.client, pharmacy, decoded[0].text)
    assert result["valid"] is True and result["fields"] == {
        "masked_name": "张*三",
        "card_status": "active",
    }, result


async def test_the_svg_and_its_parameters(world: World, holder: Holder) -> None:
    svg = await world.client.get(
        "/holder/v1/codes/qr", params={"format": "svg", "border": 2}, headers=holder.headers()
    )
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg")
    for bad in ({"format": "gif"}, {"scale": 0}, {"scale": 1000}, {"ec": "X"}, {"border": -1}):
        refused = await world.client.get(
            "/holder/v1/codes/qr", params=bad, headers=holder.headers()
        )
        assert refused.status_code == 400, (bad, refused.text)


async def test_codes_need_a_live_holder_session(world: World, holder: Holder) -> None:
    assert (await world.client.post("/holder/v1/codes")).status_code == 401
    assert (
        await world.client.post("/holder/v1/codes", headers={"Authorization": "Bearer echa_forged"})
    ).status_code == 401
    await report(world, holder, "lost")
    refused = await world.client.post("/holder/v1/codes", headers=holder.headers())
    assert refused.status_code in (401, 403) and refused.json()["code"] in (
        "token_invalid",
        "card_not_active",
    )


async def test_an_unbound_ecard_gets_no_code(world: World, holder: Holder) -> None:
    unbound = await world.client.post("/holder/v1/ecard/unbind", headers=holder.headers())
    assert unbound.status_code == 200
    refused = await world.client.post("/holder/v1/codes", headers=holder.headers())
    assert refused.status_code in (401, 403)


async def test_the_elicense_verifies_offline_and_fails_once_the_card_is_revoked(
    world: World, holder: Holder
) -> None:
    response = await world.client.get("/holder/v1/elicense", headers=holder.headers())
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    now = int(time.time())
    store = await trust_store(world.client, now)
    result = verify_elicense(token, store, None, now)
    assert result.ok, result.reason
    assert result.claims.masked_name == "张*三" and "*" in result.claims.masked_id_number
    assert holder.person["identity_number"] not in token
    await report(world, holder, "lost")
    revoked = verify_elicense(token, store, await fetch_revocations(world.client, now), now)
    assert revoked.reason == "revoked"


async def test_a_code_of_another_region_verifies_through_the_trust_list(
    world: World, pharmacy: Verifier
) -> None:
    beijing = await new_holder(world, region="110000", name="王小明")
    code = (await fetch_code(world.client, beijing))["code"]
    assert parse_code(code).claims.region == "110000"
    result = await present(world.client, pharmacy, code)
    assert result["valid"] is True and result["issuer_region"] == "110000", result
    assert result["fields"]["masked_name"] == "王*明"


async def test_a_code_response_carries_the_edge_headers_and_is_counted(
    world: World, holder: Holder
) -> None:
    """The code endpoint is served before Litestar's routing, yet its answer has what every
    answer has: the security headers, a request id (the caller's, when sane) and a metrics count."""
    done = SERIES.done.get(("POST", "/holder/v1/codes", 201))
    before = done.count if done else 0
    response = await world.client.post(
        "/holder/v1/codes", headers={**holder.headers(), "X-Request-ID": "app-123"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == "app-123"
    assert (
        response.headers["x-content-type-options"] == "nosniff"
        and response.headers["x-frame-options"] == "DENY"
    )
    assert response.headers["cache-control"].startswith("no-store")
    assert SERIES.done[("POST", "/holder/v1/codes", 201)].count == before + 1
