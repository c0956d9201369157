"""Publishing the revocation list follows the registry by its card status events: a worker reads
every non-active card only on its first look and every RECONCILE_SECONDS, not every second.  A
published version is served as it was signed, for ever, and no list says why a card is on it."""

from __future__ import annotations

import base64
import time

import msgspec
import pytest

from ecard.codes import trust
from ecard.codes.controllers import code_service
from ecard.codes.trust import TrustPublisher, card_pseudonym, follow_registry
from ecard.offline import OfflineError, Reason, RevokedCard, load_revocation_list
from ecard.offline.es256 import b64url_decode
from ecard.registry.tables import Card
from tests.codes_service.conftest import Holder, new_holder, report, root_public_key
from tests.helpers import World, platform_of


@pytest.fixture()
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads of every non-active card."""
    calls: list[int] = []
    read_all = trust._registry_revocations

    async def counted(pseudonym_key: bytes):
        calls.append(1)
        return await read_all(pseudonym_key)

    monkeypatch.setattr(trust, "_registry_revocations", counted)
    return calls


def listed(view: trust.RegistryView, holder: Holder, key: bytes) -> bool:
    return ("330000", card_pseudonym(key, holder.card_id)) in view.state.entries


async def test_an_unchanged_registry_costs_no_read_of_the_cards(
    world: World, full_reads: list[int]
) -> None:
    platform = platform_of(world.client)
    first = await follow_registry(platform)
    again = await follow_registry(platform, first)
    assert again is first and len(full_reads) == 1


async def test_status_changes_are_published_from_their_events(
    world: World, holder: Holder, full_reads: list[int]
) -> None:
    platform = platform_of(world.client)
    view = await follow_registry(platform)
    await report(world, holder, "lost")
    lost = await follow_registry(platform, view)
    assert lost.state.version == view.state.version + 1 and listed(
        lost, holder, platform.pseudonym_key
    )
    await report(world, holder, "active")
    found = await follow_registry(platform, lost)
    assert found.state.version == lost.state.version + 1 and not listed(
        found, holder, platform.pseudonym_key
    )
    assert len(full_reads) == 1, "only the first look read every card"


async def test_two_workers_publish_one_version_per_change(world: World, holder: Holder) -> None:
    platform = platform_of(world.client)
    first_worker = second_worker = await follow_registry(platform)
    await report(world, holder, "frozen")
    first_worker = await follow_registry(platform, first_worker)
    second_worker = await follow_registry(platform, second_worker)  # finds it published already
    assert first_worker.state.version == second_worker.state.version
    assert first_worker.state.entries == second_worker.state.entries
    another = await new_holder(world)
    await report(world, another, "lost")
    second_worker = await follow_registry(platform, second_worker)
    first_worker = await follow_registry(
        platform, first_worker
    )  # the head moved: it folds the change
    assert first_worker.state.version == second_worker.state.version
    assert listed(first_worker, another, platform.pseudonym_key)


async def test_a_change_without_an_event_is_caught_by_the_periodic_rebuild(
    world: World, holder: Holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status written around the service (a repair by hand in the database) has no event."""
    platform = platform_of(world.client)
    view = await follow_registry(platform)
    await Card.update({Card.status: "cancelled"}).where(Card.id == holder.card_id)
    assert not listed(await follow_registry(platform, view), holder, platform.pseudonym_key)
    monkeypatch.setattr(trust, "RECONCILE_SECONDS", 0.0)
    assert listed(await follow_registry(platform, view), holder, platform.pseudonym_key)


# --- a version is served as it was published ----------------------------------------------------

REASON_WORDS = (b"lost", b"frozen", b"cancelled", b"deceased", b"reason", b"revoked_at")


def payload_of(token: str) -> dict:
    return msgspec.json.decode(b64url_decode(token.split(".")[1]))


def publisher_at(world: World, moment: float) -> TrustPublisher:
    """The worker's publisher with its wall clock at ``moment``, looking at the registry afresh."""
    publisher = code_service(world.client.app.state).publisher
    publisher.clock = lambda: moment
    publisher._revocations = None
    return publisher


async def test_a_version_is_the_same_document_whenever_and_wherever_it_is_fetched(
    world: World, holder: Holder
) -> None:
    """An old version re-stamped with a fresh expiry would let an offline verifier with no list
    accept it as current (and a lost card's e-license verify again): a version keeps the time it
    was published, byte for byte, and turns stale as it always would have."""
    start = time.time()
    publisher_at(world, start)
    first = await world.client.get("/offline/v1/revocations")
    version = payload_of(first.text)["version"]
    await report(world, holder, "lost")
    publisher_at(world, start + 60)  # a minute later: the loss is published as the next version
    at_version = await world.client.get(f"/offline/v1/revocations/{version}")
    assert at_version.status_code == 200 and at_version.content == first.content
    latest = await world.client.get("/offline/v1/revocations")
    assert payload_of(latest.text)["version"] == version + 1
    # another worker (nothing cached) signs the same bytes from the stored publication time
    elsewhere = TrustPublisher(platform_of(world.client), clock=lambda: start + 120)
    assert (await elsewhere.revocation_list_token(version)).encode() == first.content
    # two hours on: the old version is served unchanged and refused as stale; the latest is fresh
    publisher_at(world, start + 7_200)
    later = await world.client.get(f"/offline/v1/revocations/{version}")
    assert later.content == first.content
    root = await root_public_key(world.client)
    with pytest.raises(OfflineError) as refused:
        load_revocation_list(later.text, root, int(start) + 7_200)
    assert refused.value.reason is Reason.STALE_REVOCATION_LIST
    fresh = (await world.client.get("/offline/v1/revocations")).text
    assert payload_of(fresh)["version"] > version + 1  # republished: the same set, a new version
    assert load_revocation_list(fresh, root, int(start) + 7_200).lookup(
        "330000", card_pseudonym(platform_of(world.client).pseudonym_key, holder.card_id)
    )
    # a delta is stamped with its target version's time: fetched again later, the same bytes
    delta = await world.client.get(
        "/offline/v1/revocations/delta", params={"from_version": version}
    )
    publisher_at(world, start + 7_260)
    again = await world.client.get(
        "/offline/v1/revocations/delta", params={"from_version": version}
    )
    assert delta.status_code == 200 and again.content == delta.content
    assert payload_of(delta.text)["issued_at"] == payload_of(fresh)["issued_at"]


async def test_the_public_lists_say_no_reason_and_no_time_per_card(
    world: World, holder: Holder
) -> None:
    """The pseudonym is in every code and e-license of the holder: the lists name revoked cards
    and nothing else, and a change of reason (lost, then deceased) publishes no change."""
    platform = platform_of(world.client)
    before = await world.client.get("/offline/v1/revocations")
    version = payload_of(before.text)["version"]
    await report(world, holder, "lost")
    lost = await publisher_at(world, time.time()).revocation_list_token()
    await report(world, holder, "deceased")
    deceased = await publisher_at(world, time.time()).revocation_list_token()
    assert payload_of(lost)["digest"] == payload_of(deceased)["digest"]
    package = (await world.client.get("/offline/v1/package")).text
    delta = (
        await world.client.get("/offline/v1/revocations/delta", params={"from_version": version})
    ).text
    documents = [lost, deceased, delta, package, payload_of(package)["revocation_list"]]
    entry = {
        "region": "330000",
        "pseudonym": card_pseudonym(platform.pseudonym_key, holder.card_id),
    }
    for token in documents:
        text = msgspec.json.encode(payload_of(token))
        assert not [word for word in REASON_WORDS if word in text.lower()], text
    for token in (deceased, payload_of(package)["revocation_list"]):
        entries = msgspec.json.decode(
            msgspec.json.encode(payload_of(token)["entries"]), type=list[RevokedCard]
        )
        assert RevokedCard(**entry) in entries
        assert all(set(raw) == {"region", "pseudonym"} for raw in payload_of(token)["entries"])
    assert [raw["pseudonym"] for raw in payload_of(delta)["added"]] == [
        base64.b64encode(entry["pseudonym"]).decode()  # type: ignore[arg-type]
    ]
