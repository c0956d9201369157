"""Tables of the webhooks domain: each partner's endpoint, and the outbox that is also the
delivery log.

No personal data: a delivery's payload names ids and statuses only; an endpoint's signing secrets
are stored encrypted (AES-256-GCM, bound to the endpoint row and the secret's slot).
Times the worker schedules by are epoch seconds (``DoublePrecision``), so one clock drives them.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Bytea,
    DoublePrecision,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from ecard.registry.tables import ApiClient


class WebhookEndpoint(Table, tablename="webhook_endpoint"):
    """Where one partner (an :class:`ApiClient`) receives its events, and the secrets that sign
    them.  During a rotation's overlap ``previous_secret_enc`` still signs, beside the current one,
    until ``previous_expires_at``."""

    id = Varchar(length=32, primary_key=True)
    client = ForeignKey(references=ApiClient, null=False, unique=True)
    url = Varchar(length=2048)
    secret_enc = Bytea()
    previous_secret_enc = Bytea(null=True, default=None)
    previous_expires_at = DoublePrecision(null=True, default=None)
    #: the subscribed event types (JSON list); ``["*"]`` is every type, present and future
    event_types = JSON(default='["*"]')
    status = Varchar(length=16, default="active")  # active | disabled
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class WebhookDelivery(Table, tablename="webhook_delivery"):
    """One event for one partner: written by :func:`ecard.webhooks.outbox.enqueue` in the
    transaction of the change it announces, sent (and re-sent) by the delivery worker.  ``id`` is
    the Standard Webhooks ``webhook-id``: the same on every attempt, so receivers de-duplicate.

    A pending row is due when ``next_attempt_at`` has passed; a worker claims it by moving
    ``next_attempt_at`` forward by a lease and writing its own ``claim`` (a conditional UPDATE),
    so no two workers send it at once."""

    id = Varchar(length=40, primary_key=True)
    client = ForeignKey(references=ApiClient, null=False, index=True)
    event_type = Varchar(length=40, index=True)
    payload = Text()  # the exact JSON body that is signed and sent
    created_at = DoublePrecision(index=True)  # when the event happened (the payload's timestamp)
    #: when the current retry window opened (created_at, or the last redelivery): the worker
    #: gives up :data:`ecard.webhooks.core.MAX_AGE` after it
    retry_since = DoublePrecision()
    status = Varchar(length=24, index=True)  # pending | delivered | failed_permanently
    attempts = Integer(default=0)  # sends made in the current retry window
    next_attempt_at = DoublePrecision(null=True, default=None, index=True)
    claim = Varchar(length=32, null=True, default=None)
    last_status_code = Integer(null=True, default=None)
    last_error = Varchar(length=200, null=True, default=None)
    delivered_at = DoublePrecision(null=True, default=None)


TABLES: list[type[Table]] = [WebhookEndpoint, WebhookDelivery]
