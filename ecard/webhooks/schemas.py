"""Request and response bodies of the webhooks operator API (msgspec Structs, validated at the
edge)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

#: ecard.webhooks.core.EVENT_TYPES, as the API spells them; ``*`` is every type
EventType = Literal[
    "card.status_changed",
    "card.replaced",
    "ecard.unbound",
    "ecard.issued_elsewhere",
    "person.deceased",
    "*",
]
DeliveryStatus = Literal["pending", "delivered", "failed_permanently"]
EndpointStatus = Literal["active", "disabled"]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
MAX_OVERLAP = 7 * 86_400


class EndpointPut(msgspec.Struct, forbid_unknown_fields=True):
    """Create or update a client's endpoint.  ``event_types`` omitted: every type (on create) or
    unchanged (on update); ``status`` omitted: active (on create) or unchanged."""

    url: Url
    event_types: Annotated[list[EventType], msgspec.Meta(max_length=16)] | None = None
    status: EndpointStatus | None = None


class SecretRotation(msgspec.Struct, forbid_unknown_fields=True):
    #: seconds the old secret keeps signing beside the new one (0: it stops at once)
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_OVERLAP)] = 86_400


class EndpointView(msgspec.Struct, omit_defaults=True):
    client_id: str
    url: str
    event_types: list[str]
    status: str
    #: until when the previous secret still signs beside the current one (ISO 8601), if it does
    previous_secret_expires_at: str | None = None
    #: the signing secret: shown once, when the endpoint is created or its secret rotated
    secret: str | None = None


class DeliveryView(msgspec.Struct):
    id: str  # the webhook-id, the same on every attempt
    client_id: str
    event_type: str
    payload: dict[str, Any]  # ids and statuses only
    created_at: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryView]
    total: int
    limit: int
    offset: int
