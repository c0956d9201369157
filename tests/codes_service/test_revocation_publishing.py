"""Publishing the revocation list follows the registry by its card status events: a worker reads
every non-active card only on its first look and every RECONCILE_SECONDS, not every second."""

from __future__ import annotations

import pytest

from ecard.codes import trust
from ecard.codes.trust import card_pseudonym, follow_registry
from ecard.registry.tables import Card
from tests.api.conftest import World, platform_of
from tests.codes_service.conftest import Holder, new_holder, report


@pytest.fixture()
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads of every non-active card."""
    calls: list[int] = []
    read_all = trust._registry_revocations

    async def counted(pseudonym_key: bytes):  # noqa: ANN202 - same as the wrapped function
        calls.append(1)
        return await read_all(pseudonym_key)

    monkeypatch.setattr(trust, "_registry_revocations", counted)
    return calls


def listed(view: trust.RegistryView, holder: Holder, key: bytes) -> bool:
    return ("330000", card_pseudonym(key, holder.card_id)) in view.state.entries


async def test_an_unchanged_registry_costs_no_read_of_the_cards(world: World, full_reads: list[int]) -> None:
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
    assert lost.state.version == view.state.version + 1 and listed(lost, holder, platform.pseudonym_key)
    await report(world, holder, "active")
    found = await follow_registry(platform, lost)
    assert found.state.version == lost.state.version + 1 and not listed(found, holder, platform.pseudonym_key)
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
    first_worker = await follow_registry(platform, first_worker)  # the head moved: it folds the change
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
