"""Deliveries reach a real (loopback) receiver signed, exactly as Standard Webhooks says, and
nothing is lost when the receiver is down or failing: every retry carries the same webhook-id,
the log shows each attempt, and two workers never send the same delivery at once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ecard.webhooks import core
from ecard.webhooks.delivery import LEASE, background, claim_due, deliver_due, purge_log
from ecard.webhooks.outbox import enqueue, enqueue_many
from ecard.webhooks.tables import WebhookDelivery
from tests.helpers import World, platform_of
from tests.webhooks.conftest import Partner, Receiver


async def announce(client, partner: Partner, *, at: float, ecard_id: str = "e1") -> str:  # type: ignore[no-untyped-def]
    """An event for the partner, written in a transaction as the registry does."""
    async with platform_of(client).engine.transaction():
        delivery_id = await enqueue(
            "card.status_changed",
            partner.client_id,
            {"ecard_id": ecard_id, "card_status": "lost", "ecard_status": "suspended"},
            at=at,
        )
    assert delivery_id is not None
    return delivery_id


async def log_of(client, world: World, **query: str) -> list[dict]:  # type: ignore[no-untyped-def]
    response = await client.get("/operator/v1/webhook-deliveries", params=query, headers=world.op())
    assert response.status_code == 200, response.text
    return response.json()["items"]


def verify(secret: str, received) -> dict:  # type: ignore[no-untyped-def]
    return Webhook(secret).verify(received.body, received.headers)


async def test_a_receiver_down_then_failing_then_back_gets_the_event_once_signed(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    platform = platform_of(client)
    t0 = time.time()
    delivery_id = await announce(client, partner, at=t0)

    # the receiver is not listening: connection refused, retried later
    assert await deliver_due(platform, now=t0) == 0
    [entry] = await log_of(client, world, client_id=partner.client_id)
    assert entry["id"] == delivery_id and entry["status"] == "pending" and entry["attempts"] == 1
    assert entry["last_error"] == "connection failed" and entry["last_status_code"] is None

    # not due again before its backoff
    assert await deliver_due(platform, now=t0 + 1) == 0
    assert receiver.received == []

    # it answers 500 once, then 200
    receiver.statuses = [500, 200]
    await receiver.start()
    assert await deliver_due(platform, now=t0 + 60) == 0
    [entry] = await log_of(client, world, client_id=partner.client_id)
    assert (
        entry["attempts"] == 2
        and entry["last_status_code"] == 500
        and entry["last_error"] == "HTTP 500"
    )
    assert await deliver_due(platform, now=t0 + 3600) == 1

    [entry] = await log_of(client, world, client_id=partner.client_id, status="delivered")
    assert entry["attempts"] == 3 and entry["last_status_code"] == 200 and entry["delivered_at"]
    assert entry["payload"]["data"] == {
        "ecard_id": "e1",
        "card_status": "lost",
        "ecard_status": "suspended",
    }

    assert receiver.ids() == [delivery_id, delivery_id]  # the same webhook-id on every try
    for received in receiver.received:
        body = verify(partner.secret, received)
        assert body["type"] == "card.status_changed" and body["data"]["ecard_id"] == "e1"
        assert received.headers["content-type"] == "application/json"
        assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 300
    with pytest.raises(WebhookVerificationError):
        Webhook(core.new_secret()).verify(receiver.received[0].body, receiver.received[0].headers)

    # delivered is final: later passes send nothing
    assert await deliver_due(platform, now=t0 + 86_400) == 0
    assert len(receiver.received) == 2


async def test_a_receiver_that_never_recovers_ends_failed_and_can_be_redelivered(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    platform = platform_of(client)
    receiver.statuses = [503]
    await receiver.start()
    t0 = time.time()
    delivery_id = await announce(client, partner, at=t0)
    now = t0
    for _ in range(100):  # bounded: it gives up within 3 days
        await deliver_due(platform, now=now)
        [entry] = await log_of(client, world, client_id=partner.client_id)
        if entry["status"] != "pending":
            break
        now += 6 * 3600
    assert entry["status"] == "failed_permanently" and entry["next_attempt_at"] is None
    assert 2 <= entry["attempts"] <= core.MAX_ATTEMPTS and now - t0 <= core.MAX_AGE
    assert entry["last_status_code"] == 503
    tries = len(receiver.received)
    assert set(receiver.ids()) == {delivery_id}

    # the partner fixed its side; an operator redelivers: same id, a fresh retry window
    receiver.statuses = [200]
    receiver.received.clear()
    response = await client.post(
        f"/operator/v1/webhook-deliveries/{delivery_id}/redeliver", headers=world.op()
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    assert await deliver_due(platform) == 1
    assert receiver.ids() == [delivery_id] and tries >= 2

    again = await client.post(
        f"/operator/v1/webhook-deliveries/{delivery_id}/redeliver", headers=world.op()
    )
    assert again.status_code == 409 and again.json()["code"] == "webhook_delivery_not_failed"
    unknown = await client.post(
        "/operator/v1/webhook-deliveries/msg_nope/redeliver", headers=world.op()
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "webhook_delivery_not_found"

    audit = await client.get(
        "/operator/v1/audit", params={"target_id": delivery_id}, headers=world.op()
    )
    assert [e["action"] for e in audit.json()["items"]] == ["webhook.delivery.redeliver"]


async def test_a_redirect_is_not_followed(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    receiver.statuses = [307]
    await receiver.start()
    t0 = time.time()
    await announce(client, partner, at=t0)
    assert await deliver_due(platform_of(client), now=t0) == 0
    [entry] = await log_of(client, world, client_id=partner.client_id)
    assert entry["status"] == "pending" and entry["last_status_code"] == 307
    assert "redirects are not followed" in entry["last_error"]
    assert len(receiver.received) == 1


async def test_during_a_rotation_overlap_both_secrets_verify_then_only_the_new_one(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    platform = platform_of(client)
    await receiver.start()
    rotated = await client.post(
        f"/operator/v1/clients/{partner.client_id}/webhook/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=world.op(),
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != partner.secret
    assert rotated.json()["previous_secret_expires_at"]
    shown = await client.get(
        f"/operator/v1/clients/{partner.client_id}/webhook", headers=world.op()
    )
    assert "secret" not in shown.json() and shown.json()["previous_secret_expires_at"]

    t0 = time.time()
    await announce(client, partner, at=t0, ecard_id="during")
    assert await deliver_due(platform, now=t0) == 1
    during = receiver.received[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert (
        verify(partner.secret, during)["data"]["ecard_id"] == "during"
    )  # a receiver not yet switched
    assert verify(new_secret, during)["data"]["ecard_id"] == "during"  # a receiver already switched

    later = t0 + 7200  # the overlap is over
    await announce(client, partner, at=later, ecard_id="after")
    assert await deliver_due(platform, now=later) == 1
    after = receiver.received[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verify(new_secret, after)["data"]["ecard_id"] == "after"
    with pytest.raises(WebhookVerificationError):
        verify(partner.secret, after)


async def test_a_rotation_without_overlap_stops_the_old_secret_at_once(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    await receiver.start()
    rotated = await client.post(
        f"/operator/v1/clients/{partner.client_id}/webhook/rotate-secret",
        json={"overlap_seconds": 0},
        headers=world.op(),
    )
    assert rotated.status_code == 200 and "previous_secret_expires_at" not in rotated.json()
    await announce(client, partner, at=time.time())
    assert await deliver_due(platform_of(client)) == 1
    with pytest.raises(WebhookVerificationError):
        verify(partner.secret, receiver.received[-1])
    verify(rotated.json()["secret"], receiver.received[-1])
    too_long = await client.post(
        f"/operator/v1/clients/{partner.client_id}/webhook/rotate-secret",
        json={"overlap_seconds": 8 * 86_400},
        headers=world.op(),
    )
    assert too_long.status_code == 400


async def test_two_concurrent_passes_never_send_a_delivery_twice(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    platform = platform_of(client)
    receiver.delay = 0.05  # requests overlap
    await receiver.start()
    t0 = time.time()
    async with platform.engine.transaction():
        ids = [
            await enqueue(
                "card.status_changed",
                partner.client_id,
                {"ecard_id": f"e{i}", "card_status": "lost"},
                at=t0,
            )
            for i in range(12)
        ]
    delivered = await asyncio.gather(*(deliver_due(platform, now=t0) for _ in range(3)))
    assert sum(delivered) == 12
    assert sorted(receiver.ids()) == sorted(ids)  # each exactly once
    assert receiver.most_in_flight_per_id == 1
    assert await deliver_due(platform, now=t0 + 86_400) == 0


async def test_a_claim_is_exclusive_until_its_lease_runs_out(client, partner: Partner) -> None:
    t0 = time.time()
    delivery_id = await announce(client, partner, at=t0)
    first, second = await asyncio.gather(claim_due(10, t0), claim_due(10, t0))
    assert sorted(r["id"] for r in first + second) == [delivery_id]  # one of them got it
    assert await claim_due(10, t0 + LEASE - 1) == []
    # the claimer died mid-send: after the lease another worker takes it over, same id
    [again] = await claim_due(10, t0 + LEASE + 1)
    assert again["id"] == delivery_id and again["claim"] != (first + second)[0]["claim"]


async def test_the_outbox_row_commits_or_rolls_back_with_the_change(
    client, partner: Partner
) -> None:
    platform = platform_of(client)
    with pytest.raises(RuntimeError):
        async with platform.engine.transaction():
            await enqueue("card.replaced", partner.client_id, {"ecard_id": "rolled-back"})
            raise RuntimeError("the change failed")
    assert await WebhookDelivery.count() == 0
    ids = await enqueue_many(
        "person.deceased",
        [partner.client_id, partner.client_id, "no_such_client"],
        {"ecard_id": "x"},
    )
    assert len(ids) == 1 and await WebhookDelivery.count() == 1


async def test_unsubscribed_disabled_or_unconfigured_clients_get_no_row(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    response = await client.put(
        f"/operator/v1/clients/{partner.client_id}/webhook",
        json={"url": receiver.url, "event_types": ["card.replaced"]},
        headers=world.op(),
    )
    assert response.status_code == 200 and response.json()["event_types"] == ["card.replaced"]
    assert "secret" not in response.json()  # shown once, at creation
    assert await enqueue("card.status_changed", partner.client_id, {"ecard_id": "e1"}) is None
    assert await enqueue("card.replaced", partner.client_id, {"ecard_id": "e1"}) is not None
    assert (
        await enqueue("card.replaced", world.department["client_id"], {"ecard_id": "e1"}) is None
    )  # no endpoint

    disabled = await client.put(
        f"/operator/v1/clients/{partner.client_id}/webhook",
        json={"url": receiver.url, "status": "disabled"},
        headers=world.op(),
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert await enqueue("card.replaced", partner.client_id, {"ecard_id": "e2"}) is None
    assert await WebhookDelivery.count() == 1

    # a delivery written before the endpoint was disabled is not sent, and says why
    assert await deliver_due(platform_of(client)) == 0
    [entry] = await log_of(client, world)
    assert entry["status"] == "failed_permanently" and entry["last_error"] == "no active endpoint"
    assert receiver.received == []


async def test_programming_errors_are_refused(client, partner: Partner) -> None:
    with pytest.raises(ValueError, match="unknown webhook event type"):
        await enqueue("card.exploded", partner.client_id, {"ecard_id": "e1"})
    for data in (
        {"ecard_id": "e1", "name": "张三"},
        {"identity_number": "x"},
        {"card_number": "C1"},
        {"nested": {"a": 1}},
    ):
        with pytest.raises(ValueError):
            await enqueue("card.replaced", partner.client_id, data)
    assert await WebhookDelivery.count() == 0


async def test_a_card_status_change_is_announced_to_the_channel_with_ids_only(
    client, world: World, partner: Partner, receiver: Receiver
) -> None:
    await receiver.start()
    person = await world.person_with_card()
    issued = await world.issue(person)
    changed = await client.post(
        f"/operator/v1/cards/{person['card_id']}/status",
        json={"status": "lost", "reason": "reported lost"},
        headers=world.op(),
    )
    assert changed.status_code == 200, changed.text
    assert await deliver_due(platform_of(client)) >= 1
    bodies = [verify(partner.secret, r) for r in receiver.received]
    announced = [b for b in bodies if b["type"] == "card.status_changed"]
    assert announced and announced[-1]["data"]["ecard_id"] == issued["ecard"]["id"]
    raw = b"".join(r.body for r in receiver.received).decode()
    for secret_value in (person["name"], person["identity_number"], person["card_number"]):
        assert secret_value not in raw


async def test_the_background_worker_delivers_without_being_asked(
    client, partner: Partner, receiver: Receiver
) -> None:
    platform = platform_of(client)
    await receiver.start()
    quick = dataclasses.replace(
        platform, settings=msgspec.structs.replace(platform.settings, webhook_poll_seconds=0.05)
    )
    async with background(quick):
        delivery_id = await announce(client, partner, at=time.time())
        await asyncio.wait_for(receiver.arrived.wait(), timeout=30)
    assert receiver.ids() == [delivery_id]
    row = (
        await WebhookDelivery.select(WebhookDelivery.status)
        .where(WebhookDelivery.id == delivery_id)
        .first()
    )
    assert row["status"] == "delivered"
    assert json.loads(receiver.received[0].body)["data"]["ecard_id"] == "e1"


async def test_a_receiver_too_slow_to_answer_times_out_and_is_retried(
    client, world: World, partner: Partner, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecard.webhooks import delivery

    monkeypatch.setattr(delivery, "REQUEST_TIMEOUT", 0.2)
    receiver.delay = 2.0
    await receiver.start()
    t0 = time.time()
    delivery_id = await announce(client, partner, at=t0)
    assert await deliver_due(platform_of(client), now=t0) == 0
    [entry] = await log_of(client, world, client_id=partner.client_id)
    assert (
        entry["id"] == delivery_id
        and entry["status"] == "pending"
        and entry["last_error"] == "timeout"
    )
    receiver.delay = 0.0
    assert await deliver_due(platform_of(client), now=t0 + 3600) == 1
    assert receiver.ids() == [delivery_id, delivery_id]


async def test_finished_deliveries_are_purged_after_the_retention_pending_ones_never(
    client, partner: Partner
) -> None:
    platform = platform_of(client)
    old = time.time() - 40 * 86_400  # older than the default 30 days
    delivered = await enqueue("card.replaced", partner.client_id, {"ecard_id": "a"}, at=old)
    given_up = await enqueue("card.replaced", partner.client_id, {"ecard_id": "b"}, at=old)
    waiting = await enqueue("card.replaced", partner.client_id, {"ecard_id": "c"}, at=old)
    recent = await enqueue("card.replaced", partner.client_id, {"ecard_id": "d"})
    await WebhookDelivery.update({WebhookDelivery.status: "delivered"}).where(
        WebhookDelivery.id.is_in([delivered, recent])
    )
    await WebhookDelivery.update({WebhookDelivery.status: "failed_permanently"}).where(
        WebhookDelivery.id == given_up
    )
    assert await purge_log(platform) == 2
    left = {row["id"] for row in await WebhookDelivery.select(WebhookDelivery.id)}
    assert left == {waiting, recent}
    assert await purge_log(platform) == 0
