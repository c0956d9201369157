"""The outbox: write a webhook delivery in the transaction of the change it announces.

Call :func:`enqueue` inside the caller's open transaction (``async with
platform.engine.transaction():``): piccolo runs the queries here in it, so the delivery is
written if and only if the change commits.  The delivery worker (:mod:`ecard.webhooks.delivery`)
sends it afterwards, signed, retrying until the partner answers 2xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from ecard.webhooks import core
from ecard.webhooks.tables import WebhookDelivery, WebhookEndpoint

EVENT_TYPES = core.EVENT_TYPES


def _types(value: Any) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


async def enqueue(
    event_type: str, client_id: str, data: dict[str, Any], *, at: float | None = None
) -> str | None:
    """Write one pending delivery of ``event_type`` with ``data`` (ids and statuses only) for
    ``client_id`` when that client has an active endpoint subscribed to the type; return its id
    (the ``webhook-id``), or None when nothing is to be sent.  ``at`` (epoch seconds, default
    now) is the event's time: the payload's ``timestamp`` and the first attempt's due time.

    Raises ``ValueError`` for an unknown event type or data that is not ids and statuses (both
    are programming errors).  Runs in the caller's transaction when one is open."""
    ids = await enqueue_many(event_type, [client_id], data, at=at)
    return ids[0] if ids else None


async def enqueue_many(
    event_type: str, client_ids: Iterable[str], data: dict[str, Any], *, at: float | None = None
) -> list[str]:
    """:func:`enqueue` for several clients at once (each distinct client at most once); returns
    the ids of the deliveries written, in the order of ``client_ids``."""
    core.check_event_type(event_type)
    core.check_data(data)
    wanted = list(dict.fromkeys(client_ids))
    if not wanted:
        return []
    rows = await WebhookEndpoint.select(WebhookEndpoint.client, WebhookEndpoint.event_types).where(
        WebhookEndpoint.client.is_in(wanted) & (WebhookEndpoint.status == "active")
    )
    subscribers = {
        row["client"] for row in rows if core.subscribed(_types(row["event_types"]), event_type)
    }
    at = time.time() if at is None else at
    body = core.payload(event_type, data, at)
    deliveries = [
        WebhookDelivery(
            id=core.new_delivery_id(),
            client=client_id,
            event_type=event_type,
            payload=body,
            created_at=at,
            retry_since=at,
            status="pending",
            attempts=0,
            next_attempt_at=at,
        )
        for client_id in wanted
        if client_id in subscribers
    ]
    if deliveries:
        await WebhookDelivery.insert(*deliveries).run()
    return [d.id for d in deliveries]
