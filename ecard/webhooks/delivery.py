"""The delivery worker: claims due deliveries, sends them signed, records each attempt.

Rules kept here:
- a worker sends only a delivery it has claimed: a conditional UPDATE moves ``next_attempt_at``
  forward by :data:`LEASE` and writes the worker's claim token, only where the row is still
  pending and due.  SQLite serialises writers; on PostgreSQL a second UPDATE waiting on the row
  re-checks the condition after the first commits and matches nothing.  So several workers and
  processes never send the same delivery at the same time; a worker that dies mid-send loses
  its claim when the lease runs out, and the delivery is tried again (the same ``webhook-id``:
  receivers de-duplicate);
- a result is recorded only under the worker's own claim;
- 2xx delivers; anything else (another status, a redirect, a timeout, a refused connection) is
  retried with exponential backoff and jitter (:func:`ecard.webhooks.core.next_attempt`), then
  ``failed_permanently`` after :data:`~ecard.webhooks.core.MAX_ATTEMPTS` attempts or
  :data:`~ecard.webhooks.core.MAX_AGE`;
- ``last_error`` is a short fixed phrase (a status code, an exception's type), never a response
  body, a URL or a secret.

Schedules follow the ``now`` passed in (epoch seconds, default the clock), so tests drive time;
the ``webhook-timestamp`` a request carries is always the real time of sending, since receivers
check it against their own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ecard.platform import Platform
from ecard.webhooks import core
from ecard.webhooks.tables import WebhookDelivery, WebhookEndpoint

log = logging.getLogger("ecard.webhooks")

REQUEST_TIMEOUT = 10.0  # one whole request, connection to status line
PARALLEL = 10  # requests in flight per pass
#: seconds a claim holds a delivery: longer than a pass of the default 50 deliveries can take
#: (5 rounds of :data:`PARALLEL` requests, each at most :data:`REQUEST_TIMEOUT`)
LEASE = 120.0


def secret_context(endpoint_id: str, slot: str) -> str:
    """The associated data binding an encrypted secret to its endpoint and slot
    (current/previous)."""
    return f"webhook_endpoint:{endpoint_id}:{slot}"


def signing_secrets(platform: Platform, endpoint: dict[str, Any], now: float) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until its overlap ends."""
    cipher = platform.field_cipher
    found = [
        cipher.decrypt(bytes(endpoint["secret_enc"]), secret_context(endpoint["id"], "current"))
    ]
    previous, expires = endpoint["previous_secret_enc"], endpoint["previous_expires_at"]
    if previous is not None and expires is not None and now < expires:
        found.append(cipher.decrypt(bytes(previous), secret_context(endpoint["id"], "previous")))
    return found


@dataclass
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and core.success(self.status_code)


async def claim_due(limit: int, now: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due pending deliveries for this caller (see the module's rules)."""
    due = await (
        WebhookDelivery.select(WebhookDelivery.id)
        .where((WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    claimed: list[dict[str, Any]] = []
    for row in due:
        token = secrets.token_hex(16)
        got = (
            await WebhookDelivery.update(
                {WebhookDelivery.next_attempt_at: now + LEASE, WebhookDelivery.claim: token}
            )
            .where(
                (WebhookDelivery.id == row["id"])
                & (WebhookDelivery.status == "pending")
                & (WebhookDelivery.next_attempt_at <= now)
            )
            .returning(*WebhookDelivery.all_columns())
        )
        claimed.extend(got)
    return claimed


async def _endpoints(client_ids: set[str]) -> dict[str, dict[str, Any]]:
    rows = await WebhookEndpoint.select().where(WebhookEndpoint.client.is_in(sorted(client_ids)))
    return {row["client"]: row for row in rows}


async def send(http: httpx.AsyncClient, url: str, headers: dict[str, str], body: str) -> Outcome:
    """One POST; the outcome in a status code and a short error phrase."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):  # the whole exchange, not each read
            async with http.stream("POST", url, content=body.encode(), headers=headers) as response:
                status = response.status_code  # the body is never read: a partner cannot flood us
                redirect = response.is_redirect
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(None, "timeout")
    except httpx.ConnectError:
        return Outcome(None, "connection failed")
    except httpx.HTTPError as exc:
        return Outcome(None, f"transport error: {type(exc).__name__}")
    if core.success(status):
        return Outcome(status, None)
    if redirect:
        return Outcome(status, f"HTTP {status} (redirects are not followed)")
    return Outcome(status, f"HTTP {status}")


async def _record(row: dict[str, Any], outcome: Outcome, now: float) -> bool:
    """Write the attempt's result under this worker's claim; True when it delivered."""
    attempts = row["attempts"] + 1
    values: dict[Any, Any] = {
        WebhookDelivery.attempts: attempts,
        WebhookDelivery.claim: None,
        WebhookDelivery.last_status_code: outcome.status_code,
        WebhookDelivery.last_error: outcome.error,
    }
    if outcome.delivered:
        values |= {
            WebhookDelivery.status: "delivered",
            WebhookDelivery.delivered_at: now,
            WebhookDelivery.next_attempt_at: None,
        }
    else:
        retry_at = core.next_attempt(attempts, row["retry_since"], now)
        if retry_at is None:
            values |= {
                WebhookDelivery.status: "failed_permanently",
                WebhookDelivery.next_attempt_at: None,
            }
        else:
            values[WebhookDelivery.next_attempt_at] = retry_at
    await WebhookDelivery.update(values).where(
        (WebhookDelivery.id == row["id"]) & (WebhookDelivery.claim == row["claim"])
    )
    return outcome.delivered


async def _give_up(row: dict[str, Any], error: str) -> None:
    """End a claimed delivery without sending it (no usable endpoint)."""
    await WebhookDelivery.update(
        {
            WebhookDelivery.status: "failed_permanently",
            WebhookDelivery.next_attempt_at: None,
            WebhookDelivery.claim: None,
            WebhookDelivery.last_error: error,
        }
    ).where((WebhookDelivery.id == row["id"]) & (WebhookDelivery.claim == row["claim"]))


async def _attempt(
    platform: Platform,
    http: httpx.AsyncClient,
    row: dict[str, Any],
    endpoint: dict[str, Any] | None,
    now: float | None,
    gate: asyncio.Semaphore,
) -> bool:
    if endpoint is None or endpoint["status"] != "active":
        await _give_up(row, "no active endpoint")
        return False
    started = time.time() if now is None else now
    try:
        signing = signing_secrets(platform, endpoint, started)
    except ValueError:  # a secret that no longer decrypts (another field key): never send unsigned
        await _give_up(row, "endpoint secret unreadable")
        return False
    headers = core.headers(signing, row["id"], int(time.time()), row["payload"])
    async with gate:
        outcome = await send(http, endpoint["url"], headers, row["payload"])
    return await _record(row, outcome, time.time() if now is None else now)


async def deliver_pass(
    platform: Platform, *, limit: int = 50, now: float | None = None
) -> tuple[int, int]:
    """One pass: (deliveries claimed, deliveries delivered)."""
    claimed = await claim_due(limit, time.time() if now is None else now)
    if not claimed:
        return 0, 0
    endpoints = await _endpoints({row["client"] for row in claimed})
    gate = asyncio.Semaphore(PARALLEL)
    async with httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False
    ) as http:
        results = await asyncio.gather(
            *(
                _attempt(platform, http, row, endpoints.get(row["client"]), now, gate)
                for row in claimed
            )
        )
    return len(claimed), sum(results)


async def deliver_due(platform: Platform, *, limit: int = 50, now: float | None = None) -> int:
    """Claim up to ``limit`` due deliveries, send each once, record the outcomes; return how many
    were delivered.  Safe to run in several workers and processes at once."""
    return (await deliver_pass(platform, limit=limit, now=now))[1]


#: How often a worker purges the delivery log of rows past the retention.
PURGE_INTERVAL = 3600.0


async def purge_log(platform: Platform, *, now: float | None = None) -> int:
    """Delete the finished deliveries (``delivered``, ``failed_permanently``) of events older than
    ``webhook_retention_days``; pending ones are never purged.  Returns how many went."""
    cutoff = (
        time.time() if now is None else now
    ) - platform.settings.webhook_retention_days * 86_400
    gone = (
        await WebhookDelivery.delete()
        .where(
            WebhookDelivery.status.is_in(["delivered", "failed_permanently"])
            & (WebhookDelivery.created_at < cutoff)
        )
        .returning(WebhookDelivery.id)
    )
    return len(gone)


async def run_worker(
    platform: Platform, stop: asyncio.Event, interval: float, limit: int = 50
) -> None:
    """Deliver until ``stop`` is set: a full pass goes on at once, otherwise waits ``interval``.
    A failing pass (the database away) is logged and tried again after the interval.  Once an
    hour the log is purged (:func:`purge_log`)."""
    purged_at = 0.0
    while not stop.is_set():
        claimed = 0
        try:
            claimed, _ = await deliver_pass(platform, limit=limit)
            if time.monotonic() - purged_at >= PURGE_INTERVAL or purged_at == 0.0:
                purged_at = time.monotonic()
                await purge_log(platform)
        except Exception as exc:  # noqa: BLE001 - a background loop reports and goes on
            log.warning("webhook delivery pass failed: %s", type(exc).__name__)
        if claimed < limit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


@contextlib.asynccontextmanager
async def background(platform: Platform) -> AsyncIterator[None]:
    """The delivery worker for one process, every ``webhook_poll_seconds``; on the way out it
    finishes the requests in flight (each bounded by the request timeout)."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(platform, stop, platform.settings.webhook_poll_seconds), name="webhook-delivery"
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
