"""服务同源、全国互联: a province's signed, versioned feed (signature by the platform root key,
deltas since a version, tombstones), and a peer's feed aggregated here — while a tampered feed, a
feed signed by another key, one speaking for a province not its own, and a rollback are refused
and change nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ecard.directory.feed import open_feed
from ecard.directory.peers import pull_peer
from ecard.directory.service import DirectoryService
from ecard.offline.es256 import public_key_from_jwk
from ecard.settings import DirectoryPeer
from tests.directory.conftest import institution, register_terminal, uscc
from tests.helpers import platform_of
from tests.live import LiveServer


async def _root_key(http: httpx.AsyncClient) -> dict:
    return (await http.get("/offline/v1/root-key")).json()


async def test_the_feed_is_signed_and_versioned(client: httpx.AsyncClient, world) -> None:
    root = public_key_from_jwk(await _root_key(client))
    terminal = await register_terminal(client, world.op())
    first = await client.post(
        "/operator/v1/directory/institutions",
        json=institution("a", terminals=[{"id": terminal}]),
        headers=world.op(),
    )
    second = await client.post(
        "/operator/v1/directory/institutions", json=institution("b"), headers=world.op()
    )
    assert first.status_code == second.status_code == 201
    response = await client.get("/directory/v1/feed")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/jose"
    )
    full = open_feed(response.text, root)
    assert full.since == 0 and full.provinces == ["110000", "330000"]
    assert {i.id for i in full.institutions} == {"330000-a", "330000-b"}
    assert next(i for i in full.institutions if i.id == "330000-a").media == [
        "chip_card",
        "qr_code",
    ]
    again = await client.get(
        "/directory/v1/feed", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304

    # a withdrawal and a change: the delta carries exactly them
    held = full.version
    assert (
        await client.delete("/operator/v1/directory/institutions/330000-b", headers=world.op())
    ).status_code == 204
    filing = await world.new_client("verifier", entitlements=["card_status"])
    put = await client.put(
        f"/operator/v1/directory/applications/{filing['client_id']}",
        json={
            "name_zh": "掌上12333",
            "name_en": "12333",
            "operator_zh": "人社厅",
            "operator_en": "HRSS",
            "scenarios": ["hrss"],
            "media": ["scan_login"],
            "regions": ["330100"],
        },
        headers=world.op(),
    )
    assert put.status_code == 201
    delta = open_feed((await client.get("/directory/v1/feed", params={"since": held})).text, root)
    assert delta.since == held and delta.version > held
    assert [t.id for t in delta.tombstones] == ["330000-b"]
    assert [a.id for a in delta.applications] == [f"330000-{filing['client_id']}"]
    assert delta.institutions == []

    # a terminal disabled changes what the feed says of its institution (a new version)
    await client.post(
        f"/operator/v1/terminals/{terminal}/status",
        json={"status": "disabled", "reason": "broken"},
        headers=world.op(),
    )
    later = open_feed(
        (await client.get("/directory/v1/feed", params={"since": delta.version})).text, root
    )
    assert [(i.id, i.media) for i in later.institutions] == [("330000-a", [])]

    ahead = await client.get("/directory/v1/feed", params={"since": later.version + 5})
    assert ahead.status_code == 400 and ahead.json()["code"] == "directory_feed_since_invalid"


@pytest.fixture()
def peer_server() -> Iterator[LiveServer]:
    """Shanghai's deployment, a real ``ecard serve`` process of its own (one process binds its
    tables to one database)."""
    live = LiveServer.start(env={"ECARD_REGION_CODE": "310000"})
    yield live
    live.stop()


@pytest.fixture()
async def peer(peer_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the Shanghai deployment, with its operator's token in ``peer.admin``."""
    async with httpx.AsyncClient(base_url=peer_server.url, timeout=30) as http:
        login = await http.post(
            "/operator/v1/login", json={"username": "admin", "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        http.admin = {"Authorization": f"Bearer {login.json()['access_token']}"}  # type: ignore[attr-defined]
        yield http


def _shanghai(key: str, **extra) -> dict:
    fields = {
        "uscc": uscc("12310000MB0000012"),
        "name_zh": "瑞金医院",
        "name_en": "Ruijin Hospital",
        "address_zh": "上海市黄浦区瑞金二路197号",
        "region": "310101",
        "lat": 31.2130,
        "lon": 121.4690,
    }
    return institution(key, **{**fields, **extra})


async def test_a_peers_feed_is_aggregated_and_a_bad_one_refused(
    client: httpx.AsyncClient, world, peer: httpx.AsyncClient
) -> None:
    made = await peer.post(
        "/operator/v1/directory/institutions", json=_shanghai("ruijin"), headers=peer.admin
    )
    assert made.status_code == 201, made.text
    url = str(peer.base_url).rstrip("/") + "/directory/v1/feed"
    config = DirectoryPeer(url=url, root_key=await _root_key(peer), provinces=["310000"])
    local = DirectoryService(platform_of(client))

    status = await pull_peer(local, config, peer)
    assert status.ok and status.applied == 1, status
    found = await client.get("/directory/v1/institutions", params={"region": "31"})
    [item] = found.json()["items"]
    assert item["entry"]["id"] == "310000-ruijin" and item["entry"]["province"] == "310000"
    assert (await client.get("/directory/v1/institutions/310000-ruijin")).status_code == 200
    # our own feed never republishes a peer's entries: each province is its own entries' source
    ours = open_feed(
        (await client.get("/directory/v1/feed")).text, public_key_from_jwk(await _root_key(client))
    )
    assert all(i.province == "330000" for i in ours.institutions)
    old_token = (await peer.get("/directory/v1/feed")).text

    # a delta: the peer withdraws, we drop it
    museum = await peer.post(
        "/operator/v1/directory/institutions",
        json=_shanghai("museum", name_zh="上海博物馆", kind="museum", scenarios=["culture"]),
        headers=peer.admin,
    )
    assert museum.status_code == 201
    assert (
        await peer.delete("/operator/v1/directory/institutions/310000-ruijin", headers=peer.admin)
    ).status_code == 204
    status = await pull_peer(local, config, peer)
    assert status.ok and status.applied == 2
    ids = [
        i["entry"]["id"]
        for i in (
            await client.get("/directory/v1/institutions", params={"region": "310000"})
        ).json()["items"]
    ]
    assert ids == ["310000-museum"]
    held = status.version

    async def served(token: str) -> httpx.AsyncClient:
        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, text=token, headers={"content-type": "application/jose"})

        return httpx.AsyncClient(transport=httpx.MockTransport(answer))

    def tampered(token: str) -> str:
        head, payload, signature = token.split(".")
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        body["institutions"] = (
            [dict(body["institutions"][0], name_zh="假医院")] if body["institutions"] else []
        )
        body["version"] += 1
        raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
        return f"{head}.{raw}.{signature}"

    current = (await peer.get("/directory/v1/feed")).text
    # tampered, signed by another root (ours), a rollback, and a province not the peer's
    ours_token = (await client.get("/directory/v1/feed")).text
    wrong_province = DirectoryPeer(url=url, root_key=await _root_key(peer), provinces=["320000"])
    for token, config_used, why in (
        (tampered(current), config, "BAD_SIGNATURE"),
        (ours_token, config, "BAD_SIGNATURE"),
        (old_token, config, "rollback"),
        (current, wrong_province, "wrong_province"),
    ):
        status = await pull_peer(local, config_used, await served(token))
        assert not status.ok and status.version == held, (why, status)
        assert why.lower() in (status.error or "").lower(), (why, status.error)
    after = [
        i["entry"]["id"]
        for i in (await client.get("/directory/v1/institutions", params={"region": "31"})).json()[
            "items"
        ]
    ]
    assert after == ["310000-museum"]
    state = await local.peer_state(url)
    assert state is not None and int(state["version"]) == held and state["last_error"]
