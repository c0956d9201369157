"""The webhooks operator service: a client's endpoint (create, update, rotate its secret) and the
delivery log (list, redeliver).

Rules kept here:
- a client has at most one endpoint; its URL passes :func:`ecard.webhooks.core.check_url`;
- a signing secret is shown once, when made (endpoint created, secret rotated), and stored only
  encrypted, bound to its endpoint and slot;
- a rotation keeps the old secret signing beside the new one for the overlap asked (at most
  seven days), so receivers can switch without losing a delivery;
- only a permanently failed delivery is redelivered, with the same id and a fresh retry window;
- every change is audited with ids and settings only (no URL, no secret).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry.audit import audit, new_id
from ecard.registry.tables import ApiClient
from ecard.store.db import is_unique_violation
from ecard.webhooks import core, schemas
from ecard.webhooks.delivery import secret_context
from ecard.webhooks.tables import WebhookDelivery, WebhookEndpoint

MAX_PAGE = 200


def _types(value: Any) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def endpoint_view(
    row: dict[str, Any], now: float, secret: str | None = None
) -> schemas.EndpointView:
    expires = row["previous_expires_at"]
    overlapping = row["previous_secret_enc"] is not None and expires is not None and now < expires
    return schemas.EndpointView(
        client_id=row["client"],
        url=row["url"],
        event_types=_types(row["event_types"]),
        status=row["status"],
        previous_secret_expires_at=core.iso_time(expires) if overlapping else None,
        secret=secret,
    )


def delivery_view(row: dict[str, Any]) -> schemas.DeliveryView:
    pending = row["status"] == "pending"
    return schemas.DeliveryView(
        id=row["id"],
        client_id=row["client"],
        event_type=row["event_type"],
        payload=json.loads(row["payload"]),
        created_at=core.iso_time(row["created_at"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=core.iso_time(row["next_attempt_at"])
        if pending and row["next_attempt_at"] is not None
        else None,
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=None if row["delivered_at"] is None else core.iso_time(row["delivered_at"]),
    )


class WebhookService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _seal(self, secret: str, endpoint_id: str, slot: str) -> bytes:
        return self.platform.field_cipher.encrypt(secret, secret_context(endpoint_id, slot))

    async def _check_client(self, client_id: str) -> None:
        if not await ApiClient.exists().where(ApiClient.id == client_id):
            raise AppError("channel_not_found", "no such client")

    async def _endpoint(self, client_id: str) -> dict[str, Any]:
        await self._check_client(client_id)
        row = await WebhookEndpoint.select().where(WebhookEndpoint.client == client_id).first()
        if row is None:
            raise AppError("webhook_not_configured")
        return row

    async def get_endpoint(self, client_id: str) -> schemas.EndpointView:
        return endpoint_view(await self._endpoint(client_id), time.time())

    async def put_endpoint(
        self, client_id: str, data: schemas.EndpointPut, actor: str
    ) -> tuple[schemas.EndpointView, bool]:
        """Create the client's endpoint (returning its secret, once) or update it; the flag says
        whether it was created."""
        try:
            url = core.check_url(data.url, allow_http=self.platform.settings.webhook_allow_http)
        except core.InvalidUrl as exc:
            raise AppError("webhook_url_invalid", str(exc)) from None
        types = None if data.event_types is None else core.normalize_event_types(data.event_types)
        await self._check_client(client_id)
        for _ in range(2):  # a concurrent create of the same endpoint makes this one an update
            try:
                return await self._put(client_id, url, types, data.status, actor)
            except Exception as exc:
                if not is_unique_violation(exc):
                    raise
        raise AppError("idempotency_conflict", "the endpoint was changed concurrently; retry")

    async def _put(
        self, client_id: str, url: str, types: list[str] | None, status: str | None, actor: str
    ) -> tuple[schemas.EndpointView, bool]:
        secret: str | None = None
        async with self.platform.engine.transaction():
            row = (
                await WebhookEndpoint.select(WebhookEndpoint.id)
                .where(WebhookEndpoint.client == client_id)
                .first()
            )
            if row is None:
                endpoint_id, secret = new_id(), core.new_secret()
                types = types or [core.ALL_EVENTS]
                await WebhookEndpoint.insert(
                    WebhookEndpoint(
                        id=endpoint_id,
                        client=client_id,
                        url=url,
                        secret_enc=self._seal(secret, endpoint_id, "current"),
                        event_types=json.dumps(types),
                        status=status or "active",
                    )
                ).run()
                await audit(
                    actor,
                    "webhook.endpoint.create",
                    "client",
                    client_id,
                    event_types=types,
                    status=status or "active",
                )
            else:
                values: dict[Any, Any] = {
                    WebhookEndpoint.url: url,
                    WebhookEndpoint.updated_at: dt.datetime.now(dt.UTC),
                }
                if types is not None:
                    values[WebhookEndpoint.event_types] = json.dumps(types)
                if status is not None:
                    values[WebhookEndpoint.status] = status
                await WebhookEndpoint.update(values).where(WebhookEndpoint.id == row["id"])
                await audit(
                    actor,
                    "webhook.endpoint.update",
                    "client",
                    client_id,
                    event_types=types,
                    status=status,
                )
            saved = (
                await WebhookEndpoint.select().where(WebhookEndpoint.client == client_id).first()
            )
        if saved is None:  # written just above
            raise RuntimeError("the webhook row vanished while it was written")
        return endpoint_view(saved, time.time(), secret), secret is not None

    async def rotate_secret(
        self, client_id: str, overlap_seconds: int, actor: str, *, now: float | None = None
    ) -> schemas.EndpointView:
        """A new current secret (returned once); the old one signs beside it for
        ``overlap_seconds`` (none when 0)."""
        now = time.time() if now is None else now
        row = await self._endpoint(client_id)
        endpoint_id = row["id"]
        cipher = self.platform.field_cipher
        old = cipher.decrypt(bytes(row["secret_enc"]), secret_context(endpoint_id, "current"))
        secret = core.new_secret()
        async with self.platform.engine.transaction():
            changed = (
                await WebhookEndpoint.update(
                    {
                        WebhookEndpoint.secret_enc: self._seal(secret, endpoint_id, "current"),
                        WebhookEndpoint.previous_secret_enc: self._seal(
                            old, endpoint_id, "previous"
                        )
                        if overlap_seconds
                        else None,
                        WebhookEndpoint.previous_expires_at: now + overlap_seconds
                        if overlap_seconds
                        else None,
                        WebhookEndpoint.updated_at: dt.datetime.now(dt.UTC),
                    }
                )
                .where(
                    (WebhookEndpoint.id == endpoint_id)
                    & (WebhookEndpoint.secret_enc == bytes(row["secret_enc"]))
                )
                .returning(WebhookEndpoint.id)
            )
            if not changed:  # another rotation won: its secret is the one the partner was given
                raise AppError("idempotency_conflict", "the secret was rotated concurrently; retry")
            await audit(
                actor, "webhook.secret.rotate", "client", client_id, overlap_seconds=overlap_seconds
            )
        saved = await WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id).first()
        if saved is None:  # endpoints are never deleted here
            raise RuntimeError("the webhook row vanished while it was written")
        return endpoint_view(saved, now, secret)

    async def list_deliveries(
        self,
        *,
        client_id: str | None = None,
        status: str | None = None,
        event_type: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> schemas.DeliveryPage:
        """The delivery log, newest first."""
        limit = max(1, min(limit, MAX_PAGE))
        where = []
        if client_id is not None:
            where.append(WebhookDelivery.client == client_id)
        if status is not None:
            where.append(WebhookDelivery.status == status)
        if event_type is not None:
            where.append(WebhookDelivery.event_type == event_type)
        query = (
            WebhookDelivery.select()
            .order_by(WebhookDelivery.created_at, ascending=False)
            .order_by(WebhookDelivery.id)
            .limit(limit)
            .offset(offset)
        )
        count = WebhookDelivery.count()
        if where:
            query, count = query.where(*where), count.where(*where)
        rows = await query
        return schemas.DeliveryPage(
            items=[delivery_view(r) for r in rows], total=await count, limit=limit, offset=offset
        )

    async def redeliver(
        self, delivery_id: str, actor: str, *, now: float | None = None
    ) -> schemas.DeliveryView:
        """A permanently failed delivery back to pending, due now, with a fresh retry window and
        the same id."""
        now = time.time() if now is None else now
        row = (
            await WebhookDelivery.select(
                WebhookDelivery.status, WebhookDelivery.attempts, WebhookDelivery.client
            )
            .where(WebhookDelivery.id == delivery_id)
            .first()
        )
        if row is None:
            raise AppError("webhook_delivery_not_found")
        async with self.platform.engine.transaction():
            changed = (
                await WebhookDelivery.update(
                    {
                        WebhookDelivery.status: "pending",
                        WebhookDelivery.attempts: 0,
                        WebhookDelivery.retry_since: now,
                        WebhookDelivery.next_attempt_at: now,
                        WebhookDelivery.claim: None,
                    }
                )
                .where(
                    (WebhookDelivery.id == delivery_id)
                    & (WebhookDelivery.status == "failed_permanently")
                )
                .returning(WebhookDelivery.id)
            )
            if not changed:
                raise AppError("webhook_delivery_not_failed", f"the delivery is {row['status']}")
            await audit(
                actor,
                "webhook.delivery.redeliver",
                "webhook_delivery",
                delivery_id,
                client=row["client"],
                previous_attempts=row["attempts"],
            )
        saved = await WebhookDelivery.select().where(WebhookDelivery.id == delivery_id).first()
        if saved is None:  # deliveries are never deleted here
            raise RuntimeError("the webhook row vanished while it was written")
        return delivery_view(saved)
