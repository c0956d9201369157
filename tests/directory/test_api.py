"""The service zone's API on both storage backends: operators list filings and institutions,
the public searches by region, scenario, medium, text and place, pages, and caches by ETag;
"where can I use my card" follows the terminals that really accept it."""

from __future__ import annotations

import httpx
import pytest

from tests.directory.conftest import (
    institution,
    listing,
    register_terminal,
    set_terminal,
)


async def _put_listing(http: httpx.AsyncClient, world, client_id: str, **overrides) -> dict:
    response = await http.put(
        f"/operator/v1/directory/applications/{client_id}",
        json=listing(**overrides),
        headers=world.op(),
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _add(http: httpx.AsyncClient, world, body: dict) -> dict:
    response = await http.post(
        "/operator/v1/directory/institutions", json=body, headers=world.op("registry_admin")
    )
    assert response.status_code == 201, response.text
    return response.json()["entry"]


async def test_listings_search_and_cache(client: httpx.AsyncClient, world) -> None:
    filing = await world.new_client("verifier", entitlements=["card_status"])
    entry = await _put_listing(client, world, filing["client_id"])
    assert entry["id"] == f"330000-{filing['client_id']}"
    assert entry["fields"] == ["hrss", "government"]
    other = await world.new_client("verifier", entitlements=["card_status"])
    await _put_listing(
        client,
        world,
        other["client_id"],
        name_zh="杭州地铁乘车码",
        name_en="Hangzhou Metro",
        scenarios=["transport"],
        media=["qr_code", "nfc_hce"],
        regions=["330106"],
    )

    async def ids(**params) -> list[str]:
        response = await client.get("/directory/v1/applications", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    metro = f"330000-{other['client_id']}"
    assert set(await ids()) == {entry["id"], metro}
    assert await ids(region="330106") == sorted([entry["id"], metro])  # province-wide app too
    assert await ids(region="3301") == sorted([entry["id"], metro])
    assert await ids(region="330102") == [entry["id"]]
    assert await ids(region="110000") == []
    assert await ids(scenario="transport") == [metro]
    assert await ids(medium="nfc_hce") == [metro]
    assert await ids(q="地铁") == [metro]
    assert await ids(q="METRO") == [metro]
    assert await ids(q="50%_off") == []

    # strong ETag, 304 on If-None-Match (weak comparison and lists), public caching
    first = await client.get("/directory/v1/applications", params={"scenario": "transport"})
    tag = first.headers["etag"]
    assert tag.startswith('"') and "public" in first.headers["cache-control"]
    for sent in (tag, f'"x", W/{tag}', "*"):
        again = await client.get(
            "/directory/v1/applications",
            params={"scenario": "transport"},
            headers={"If-None-Match": sent},
        )
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == tag

    # a suspended filing is not listed; a withdrawn listing neither
    suspended = await client.post(
        f"/operator/v1/clients/{other['client_id']}/status",
        json={"status": "disabled", "reason": "test"},
        headers=world.op(),
    )
    if suspended.status_code == 200:
        assert await ids() == [entry["id"]]
    gone = await client.delete(
        f"/operator/v1/directory/applications/{filing['client_id']}", headers=world.op()
    )
    assert gone.status_code == 204
    assert entry["id"] not in await ids()
    changed = await client.get(
        "/directory/v1/applications",
        params={"scenario": "transport"},
        headers={"If-None-Match": tag},
    )
    assert changed.status_code in (200, 304)


async def test_where_the_card_works_follows_live_terminals(
    client: httpx.AsyncClient, world
) -> None:
    chip_and_qr = await register_terminal(client, world.op())
    qr_only = await register_terminal(client, world.op())
    hospital = await _add(
        client,
        world,
        institution("hz-first", terminals=[{"id": chip_and_qr, "media": ["chip_card", "qr_code"]}]),
    )
    pharmacy = await _add(
        client,
        world,
        institution(
            "hz-pharmacy",
            name_zh="西湖大药房",
            name_en="West Lake Pharmacy",
            kind="pharmacy",
            region="330106",
            lat=30.2780,
            lon=120.1400,
            terminals=[{"id": qr_only, "media": ["qr_code"]}],
        ),
    )
    museum = await _add(
        client,
        world,
        institution(
            "hz-museum",
            name_zh="浙江省博物馆",
            name_en="Zhejiang Museum",
            kind="museum",
            region="330106",
            scenarios=["culture", "tourism"],
            lat=30.2500,
            lon=120.1450,
        ),
    )
    assert hospital["media"] == ["chip_card", "qr_code"] and hospital["terminals"] == 1
    assert pharmacy["media"] == ["qr_code"]  # declared chip too, but no terminal reads chips
    assert museum["media"] == [] and museum["terminals"] == 0

    async def ids(**params) -> list[str]:
        response = await client.get("/directory/v1/institutions", params=params)
        assert response.status_code == 200, response.text
        return [item["entry"]["id"] for item in response.json()["items"]]

    assert await ids(medium="chip_card") == [hospital["id"]]
    assert await ids(medium="qr_code") == sorted([hospital["id"], pharmacy["id"]])
    assert await ids(region="330106") == sorted([pharmacy["id"], museum["id"]])
    assert await ids(scenario="culture") == [museum["id"]]
    assert await ids(q="pharmacy") == [pharmacy["id"]]
    assert await ids(q="博物馆") == [museum["id"]]
    assert await ids(kind="hospital") == [hospital["id"]]

    await set_terminal(client, world.op(), chip_and_qr, "disabled")
    assert await ids(medium="chip_card") == []
    detail = await client.get(f"/directory/v1/institutions/{hospital['id']}")
    assert detail.status_code == 200 and detail.json()["entry"]["media"] == []
    await set_terminal(client, world.op(), chip_and_qr, "active")
    assert await ids(medium="chip_card") == [hospital["id"]]

    # near a point: ordered by distance, with distance and direction; out of the radius: gone
    near = await client.get(
        "/directory/v1/institutions", params={"lat": 30.2520, "lon": 120.1700, "radius": 5000}
    )
    items = near.json()["items"]
    assert [i["entry"]["id"] for i in items] == [hospital["id"], museum["id"], pharmacy["id"]]
    assert items[0]["nearby"]["distance_m"] == 0
    assert items[1]["nearby"]["direction_en"] in ("SW", "W")
    assert 2000 < items[1]["nearby"]["distance_m"] < 3000
    close = await client.get(
        "/directory/v1/institutions", params={"lat": 30.2520, "lon": 120.1700, "radius": 1000}
    )
    assert [i["entry"]["id"] for i in close.json()["items"]] == [hospital["id"]]

    # paging
    page1 = (await client.get("/directory/v1/institutions", params={"limit": 2})).json()
    page2 = (await client.get("/directory/v1/institutions", params={"limit": 2, "page": 2})).json()
    assert page1["total"] == page2["total"] == 3
    assert len(page1["items"]) == 2 and len(page2["items"]) == 1
    assert {i["entry"]["id"] for i in page1["items"] + page2["items"]} == {
        hospital["id"],
        pharmacy["id"],
        museum["id"],
    }

    # update and withdrawal
    moved = await client.put(
        f"/operator/v1/directory/institutions/{museum['id']}",
        json=institution(
            "hz-museum",
            name_zh="浙江省博物馆孤山馆区",
            kind="museum",
            region="330106",
            scenarios=["culture"],
            lat=30.2500,
            lon=120.1450,
        ),
        headers=world.op(),
    )
    assert moved.status_code == 200, moved.text
    assert await ids(q="孤山") == [museum["id"]]
    gone = await client.delete(
        f"/operator/v1/directory/institutions/{museum['id']}", headers=world.op()
    )
    assert gone.status_code == 204
    assert (await client.get(f"/directory/v1/institutions/{museum['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"region": "990000"}, "invalid_region_code"),
        ({"region": "33x"}, "invalid_region_code"),
        ({"region": "330006"}, "invalid_region_code"),
        ({"scenario": "casino"}, "directory_scenario_unknown"),
        ({"medium": "fax"}, "directory_medium_unknown"),
        ({"kind": "palace"}, "directory_query_invalid"),
        ({"lat": "30.2"}, "directory_location_invalid"),
        ({"lat": "120.1", "lon": "30.2"}, "directory_location_invalid"),
        ({"lat": "nan", "lon": "120"}, "validation_failed"),
        ({"lat": "30.2", "lon": "120.1", "radius": "0"}, "validation_failed"),
        ({"lat": "abc", "lon": "120.1"}, "validation_failed"),
        ({"limit": "101"}, "validation_failed"),
        ({"limit": "100", "page": "101"}, "directory_query_invalid"),
        ({"q": "x" * 65}, "validation_failed"),
    ],
)
async def test_bad_parameters_are_400_with_a_code(client: httpx.AsyncClient, params, code) -> None:
    response = await client.get("/directory/v1/institutions", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


async def test_operator_input_is_checked(client: httpx.AsyncClient, world) -> None:
    async def refused(body: dict, code: str) -> None:
        response = await client.post(
            "/operator/v1/directory/institutions", json=body, headers=world.op()
        )
        assert (response.status_code, response.json()["code"]) == (400, code), response.text

    good = institution("x")
    await refused(
        {**good, "uscc": good["uscc"][:17] + ("0" if good["uscc"][17] != "0" else "1")},
        "invalid_uscc",
    )
    await refused({**good, "region": "310101"}, "invalid_region_code")  # not this deployment's
    await refused({**good, "lat": 120.17, "lon": 30.25}, "directory_location_invalid")
    await refused({**good, "kind": "casino"}, "directory_entry_invalid")
    await refused({**good, "media": ["scan_login"]}, "directory_medium_unknown")
    await refused(
        {**good, "hours": [{"days": [8], "opens": "08:00", "closes": "09:00"}]},
        "directory_entry_invalid",
    )
    await refused({**good, "terminals": [{"id": "nope"}]}, "directory_terminal_invalid")
    beijing = await register_terminal(client, world.op(), region="110000")
    await refused({**good, "terminals": [{"id": beijing}]}, "directory_terminal_invalid")

    filing = await world.new_client("verifier", entitlements=["card_status"])
    for body, code in (
        (listing(entry_url="http://12333.example.cn/"), "directory_url_invalid"),
        (listing(regions=["330000", "110000"]), "directory_foreign_province"),
        (listing(scenarios=["casino"]), "directory_scenario_unknown"),
    ):
        response = await client.put(
            f"/operator/v1/directory/applications/{filing['client_id']}",
            json=body,
            headers=world.op(),
        )
        assert (response.status_code, response.json()["code"]) == (400, code), response.text
    missing = await client.put(
        "/operator/v1/directory/applications/nope", json=listing(), headers=world.op()
    )
    assert missing.status_code == 404 and missing.json()["code"] == "directory_filing_not_found"
    # a registry_admin may keep institutions but not filings' listings; readonly neither
    forbidden = await client.put(
        f"/operator/v1/directory/applications/{filing['client_id']}",
        json=listing(),
        headers=world.op("registry_admin"),
    )
    assert forbidden.status_code == 403
    readonly = await client.post(
        "/operator/v1/directory/institutions", json=good, headers=world.op("readonly")
    )
    assert readonly.status_code == 403
