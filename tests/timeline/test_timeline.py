"""The holder's timeline (issue 17): every use of every card the person held, newest first, paged
by an opaque cursor — and nobody else's."""

from __future__ import annotations

import datetime as dt

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.consent.service import seed_demo_data
from ecard.crypto.identity import mask_card_number
from ecard.offline.es256 import b64url_decode, public_jwk
from ecard.registry.tables import Card, CardStatusEvent, ECard
from ecard.terminal.hce import HceCard
from ecard.timeline.cursor import Position, encode_cursor
from tests.helpers import World, basic, bearer, platform_of
from tests.oidc.conftest import APPROVAL, file_client, login_code
from tests.terminal_service.conftest import (
    HOSPITAL,
    RegistryCard,
    chip_of,
    reference_terminal,
    register_terminal,
)
from tests.timeline.conftest import (
    Holder,
    new_card,
    new_holder,
    new_verifier,
    timeline_page,
    verify_a_code,
    whole_timeline,
)

KINDS = {"verification", "terminal_acceptance", "login", "consent_access", "card_event"}


def at(item: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(item["at"])


def assert_newest_first(items: list[dict]) -> None:
    times = [at(item) for item in items]
    assert times == sorted(times, reverse=True), [(i["kind"], i["at"]) for i in items]


async def hce_phone(client: httpx.AsyncClient, holder: Holder) -> HceCard:
    device_key = ec.generate_private_key(ec.SECP256R1())
    response = await client.post(
        "/holder/v1/hce-certificates",
        json={"device_key": public_jwk(device_key.public_key())},
        headers=holder.headers(),
    )
    assert response.status_code == 201, response.text
    return HceCard(b64url_decode(response.json()["certificate"]), device_key)


async def consent_read(
    client: httpx.AsyncClient, world: World, holder: Holder, rp: dict[str, str]
) -> str:
    """A relying party asks, the holder grants, the party reads: the grant's id."""
    await seed_demo_data(platform_of(client), holder.person["person_id"])
    asked = await client.post(
        "/consent/v1/requests",
        json={
            "holder": {"identity_number": holder.person["identity_number"]},
            "scopes": ["card.status"],
            "purpose_code": "loan_application",
            "purpose": "个人消费贷款审核",
            "duration_seconds": 86_400,
        },
        headers=basic(rp["client_id"], rp["client_secret"]),
    )
    assert asked.status_code == 201, asked.text
    grant_id = asked.json()["id"]
    approved = await client.post(
        f"/holder/v1/consent/requests/{grant_id}/approve", json=APPROVAL, headers=holder.headers()
    )
    assert approved.status_code == 200, approved.text
    read = await client.get(
        f"/consent/v1/grants/{grant_id}/data",
        params={"scope": ["card.status"]},
        headers=basic(rp["client_id"], rp["client_secret"]),
    )
    assert read.status_code == 200, read.text
    return grant_id


async def test_every_kind_of_use_newest_first_paged_without_overlap_or_gaps(
    client: httpx.AsyncClient, world: World
) -> None:
    holder = await new_holder(world)
    card = mask_card_number(holder.person["card_number"])
    hall = await new_verifier(world, "杭州市民之家")
    first = await verify_a_code(client, holder, hall)
    await verify_a_code(client, holder, hall, reuse=first)  # refused: already used

    hospital = await register_terminal(world, HOSPITAL)
    terminal = reference_terminal(client, hospital)
    await terminal.sync()
    chip = terminal.accept_card_offline(
        await chip_of(client, RegistryCard(holder.person["card_id"], holder.person))
    )
    nfc = terminal.accept_hce_offline(await hce_phone(client, holder))
    assert chip and chip.accepted and nfc and nfc.accepted, (chip, nfc)
    assert (await terminal.upload()).status_code == 200

    rp = await file_client(world, name="某市公积金网厅")
    assert "code" in await login_code(client, rp, holder)  # type: ignore[arg-type]
    bank = await world.new_client("relying_party", name="某银行", entitlements=["card.status"])
    grant_id = await consent_read(client, world, holder, bank)
    await verify_a_code(client, holder, hall)  # the newest use

    everything, _ = await whole_timeline(client, holder, limit=100)
    assert {item["kind"] for item in everything} == KINDS
    assert_newest_first(everything)
    assert everything[0]["kind"] == "verification" and everything[0]["result"] == "valid"

    verifications = [i for i in everything if i["kind"] == "verification"]
    assert [v["result"] for v in verifications] == ["valid", "already_used", "valid"]
    assert {
        (v["verifier_id"], v["verifier_name"], v["card"], v["region"]) for v in verifications
    } == {(hall["client_id"], "杭州市民之家", card, "330000")}
    acceptances = sorted(
        (i for i in everything if i["kind"] == "terminal_acceptance"), key=lambda i: i["medium"]
    )
    assert [(a["medium"], a["result"], a["reason"], a["card"]) for a in acceptances] == [
        ("card", "accepted", None, card),
        ("hce", "accepted", None, card),
    ]
    assert {(a["terminal_id"], a["institution"]) for a in acceptances} == {
        (hospital.id, "杭州市第一人民医院")
    }
    assert all(a["terminal_name"] for a in acceptances)
    [login] = [i for i in everything if i["kind"] == "login"]
    assert (
        login["relying_party_id"],
        login["relying_party_name"],
        login["result"],
        login["device"],
    ) == (rp.client_id, "某市公积金网厅", "approved", False)
    assert "card" not in login  # a login is the e-card's, not one card's
    [access] = [i for i in everything if i["kind"] == "consent_access"]
    assert (
        access["consent_id"],
        access["relying_party_id"],
        access["relying_party_name"],
        access["scopes"],
    ) == (grant_id, bank["client_id"], "某银行", ["card.status"])
    [issued] = [i for i in everything if i["kind"] == "card_event"]
    assert (issued["card"], issued["status"], issued["from_status"]) == (card, "active", None)

    for limit in (1, 2, 3, 7):
        paged, pages = await whole_timeline(client, holder, limit=limit)
        assert paged == everything  # no overlap, no gap, same order
        assert pages == -(-len(everything) // limit)


async def test_another_persons_uses_never_appear(client: httpx.AsyncClient, world: World) -> None:
    mine, theirs = await new_holder(world, "甲"), await new_holder(world, "乙")
    hall = await new_verifier(world, "某服务大厅")
    for holder in (mine, theirs, theirs):
        await verify_a_code(client, holder, hall)
    bank = await world.new_client("relying_party", name="另一家银行", entitlements=["card.status"])
    await consent_read(client, world, theirs, bank)

    for holder, verifications in ((mine, 1), (theirs, 2)):
        items, _ = await whole_timeline(client, holder, limit=100)
        card = mask_card_number(holder.person["card_number"])
        assert {i.get("card") for i in items} <= {card, None}
        assert sum(i["kind"] == "verification" for i in items) == verifications
        assert sum(i["kind"] == "card_event" for i in items) == 1
    mine_items, _ = await whole_timeline(client, mine, limit=100)
    assert not [i for i in mine_items if i["kind"] == "consent_access"]


async def test_the_timeline_spans_a_replacement(client: httpx.AsyncClient, world: World) -> None:
    """Card A is replaced by card B of the same person; the e-card keeps its id and moves to B.

    The replacement is simulated in the database the way the operation does it (A ``replaced``,
    B created for the same person, the e-card re-bound to B, the app's next refresh gets tokens
    for B)."""
    holder = await new_holder(world)
    card_a = holder.person["card_id"]
    hall = await new_verifier(world, "医保服务窗口")
    await verify_a_code(client, holder, hall)

    await Card.update({Card.status: "replaced"}).where(Card.id == card_a)
    await CardStatusEvent.insert(
        CardStatusEvent(
            card=card_a,
            from_status="active",
            to_status="replaced",
            actor="operator:test",
            reason="lost",
        )
    )
    card_b = await new_card(world, holder.person["person_id"])
    await ECard.update({ECard.card: card_b["card_id"]}).where(ECard.id == holder.ecard_id)
    refreshed = await client.post(
        "/holder/v1/session/refresh", json={"refresh_token": holder.refresh_token}
    )
    assert refreshed.status_code == 200, refreshed.text
    holder.access_token = refreshed.json()["access_token"]
    await verify_a_code(client, holder, hall)

    items, _ = await whole_timeline(client, holder, limit=100)
    assert_newest_first(items)
    masked_a, masked_b = (
        mask_card_number(holder.person["card_number"]),
        mask_card_number(card_b["card_number"]),
    )
    assert masked_a != masked_b
    assert [(i["card"], i["result"]) for i in items if i["kind"] == "verification"] == [
        (masked_b, "valid"),
        (masked_a, "valid"),
    ]
    events = [
        (i["card"], i["from_status"], i["status"]) for i in items if i["kind"] == "card_event"
    ]
    assert set(events) == {
        (masked_a, None, "active"),
        (masked_a, "active", "replaced"),
        (masked_b, None, "active"),
    }

    history = await client.get("/holder/v1/verifications", headers=holder.headers())
    assert history.status_code == 200, history.text
    assert history.json()["total"] == 2 and [v["result"] for v in history.json()["items"]] == [
        "valid",
        "valid",
    ]


async def test_a_bad_cursor_or_limit_is_a_clear_400(
    client: httpx.AsyncClient, world: World
) -> None:
    holder = await new_holder(world)
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "many"}):
        response = await timeline_page(client, holder, **params)
        assert response.status_code == 400 and response.json()["code"] == "validation_failed", (
            response.text
        )
    forged = [
        "not base64 !",
        "bm90IGpzb24",
        encode_cursor(Position(0, 9, 1)),
        encode_cursor(Position(0, 0, 1)),
        encode_cursor(Position(0, 3, "abc")),
        encode_cursor(Position(-1, 3, 1)),
        encode_cursor(Position(0, 3, 2**31)),
        "A" * 201,
    ]
    for before in forged:
        response = await timeline_page(client, holder, before=before)
        assert response.status_code == 400, (before, response.text)
        assert response.json()["code"] in {"timeline_cursor_invalid", "validation_failed"}, (
            response.text
        )
    assert (await timeline_page(client, holder, before="bm90IGpzb24")).json()[
        "code"
    ] == "timeline_cursor_invalid"
    far_future = await timeline_page(
        client, holder, before=encode_cursor(Position(2**52, 4, 2**31 - 1))
    )
    assert (
        far_future.status_code == 200 and len(far_future.json()["items"]) == 1
    )  # the card's issue


async def test_only_the_holder_reads_it(client: httpx.AsyncClient, world: World) -> None:
    holder = await new_holder(world)
    for headers in (
        {},
        world.op(),
        bearer("echa_forged.token"),
        basic(world.channel["client_id"], world.channel["client_secret"]),
    ):
        response = await client.get("/holder/v1/timeline", headers=headers)
        assert response.status_code == 401, response.text
    mine = await timeline_page(client, holder)
    assert mine.status_code == 200 and mine.headers["cache-control"] == "no-store"
