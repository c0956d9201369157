"""The pure core of webhooks: the event catalogue, payloads, endpoint URL rules, secrets, the
signature header and the retry schedule.  No I/O, no framework; the clock and the randomness come
in as arguments where a result depends on them.

Signing follows Standard Webhooks (https://www.standardwebhooks.com/): the signed content is
``{webhook-id}.{webhook-timestamp}.{body}``, HMAC-SHA256 with the endpoint's secret, sent as
``webhook-signature: v1,<base64>``; during a secret rotation's overlap two signatures are sent,
separated by a space, and a receiver holding either secret verifies.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import random
import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
from standardwebhooks import Webhook

#: Every event type a partner can subscribe to.  An unknown type is a programming error.
EVENT_TYPES: tuple[str, ...] = (
    "card.status_changed",
    "card.replaced",
    "ecard.unbound",
    "ecard.issued_elsewhere",
    "person.deceased",
)
#: what an endpoint subscribes to when it names no types: every type, present and future
ALL_EVENTS = "*"

#: keys a payload's ``data`` must never carry (personal data); payloads name ids and statuses only
PERSONAL_KEYS = frozenset(
    {
        "name",
        "full_name",
        "masked_name",
        "identity_number",
        "id_number",
        "card_number",
        "chip_serial",
        "identification_code",
        "phone",
        "mobile",
        "address",
        "birth_date",
        "gender",
        "ethnicity",
    }
)
MAX_DATA_KEYS = 16
MAX_DATA_STRING = 128

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix of a secret, not a secret
SECRET_BYTES = 32
MAX_URL_LENGTH = 2048

#: seconds before the 2nd, 3rd, … attempt; the last one repeats (before jitter)
BACKOFF: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 43_200)
JITTER = 0.2  # each delay is drawn from [delay × (1 − JITTER), delay × (1 + JITTER)]
MAX_ATTEMPTS = 15
MAX_AGE = 3 * 86_400.0  # no attempt is scheduled later than this after the retry window opened


class InvalidUrl(ValueError):
    """An endpoint URL the platform will not send to; the message says why (no secrets in it)."""


# --- events and payloads -------------------------------------------------------------------------


def check_event_type(event_type: str) -> None:
    """Rule: an event type is one of :data:`EVENT_TYPES` (``ValueError`` otherwise)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")


def check_data(data: Mapping[str, Any]) -> None:
    """Rule: a payload's data is a flat object of ids, statuses, numbers and flags: short scalar
    values, and no key that names personal data (``ValueError`` otherwise)."""
    if len(data) > MAX_DATA_KEYS:
        raise ValueError("webhook data has too many keys")
    for key, value in data.items():
        if not isinstance(key, str) or key.lower() in PERSONAL_KEYS:
            raise ValueError(f"webhook data must not carry {key!r}")
        if value is not None and not isinstance(value, (str, bool, int, float)):
            raise ValueError(f"webhook data {key!r} must be a scalar (ids and statuses only)")
        if isinstance(value, str) and len(value) > MAX_DATA_STRING:
            raise ValueError(f"webhook data {key!r} is too long for an id or a status")


def iso_time(at: float) -> str:
    """``at`` (epoch seconds) as ISO 8601 in UTC with milliseconds, e.g.
    ``2026-12-03T14:10:00.000Z``."""
    return (
        dt.datetime.fromtimestamp(at, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def payload(event_type: str, data: Mapping[str, Any], at: float) -> str:
    """The body sent, as Standard Webhooks shapes it: ``{"type", "timestamp", "data"}``."""
    return msgspec.json.encode(
        {"type": event_type, "timestamp": iso_time(at), "data": dict(data)}
    ).decode()


def subscribed(event_types: Iterable[str], event_type: str) -> bool:
    types = set(event_types)
    return ALL_EVENTS in types or event_type in types


def normalize_event_types(event_types: Iterable[str] | None) -> list[str]:
    """The stored subscription: ``["*"]`` for none given, else the named types, sorted, each
    checked (``ValueError`` for an unknown one or an empty list)."""
    if event_types is None:
        return [ALL_EVENTS]
    types = sorted(set(event_types))
    if not types:
        raise ValueError("subscribe to at least one event type (omit event_types for all)")
    if ALL_EVENTS in types:
        return [ALL_EVENTS]
    for event_type in types:
        check_event_type(event_type)
    return types


def new_delivery_id() -> str:
    """A random ``webhook-id``: stable across a delivery's retries (receivers
    de-duplicate on it)."""
    return "msg_" + secrets.token_hex(16)


# --- endpoint URLs -------------------------------------------------------------------------------


def check_url(url: str, *, allow_http: bool) -> str:
    """Rule: an endpoint URL is absolute ``https`` (``http`` only where allowed), names a host,
    and carries no credentials, no fragment, no whitespace or control characters.  Returns it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"the URL must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidUrl("the URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise InvalidUrl("the URL is malformed") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes:
        raise InvalidUrl("the URL must be https" + (" or http" if allow_http else ""))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidUrl("the URL must not carry credentials")
    if parts.fragment or "#" in url:
        raise InvalidUrl("the URL must not have a fragment")
    if not parts.hostname:
        raise InvalidUrl("the URL must name a host")
    if port == 0:
        raise InvalidUrl("the URL's port is invalid")
    if not allow_http:
        rule_public_host(parts.hostname)
    return url


def rule_public_host(host: str) -> None:
    """Rule (production, ``webhook_allow_http`` off): a URL naming its host by address names a
    public one, and ``localhost`` is refused — an endpoint on the platform's own network would let
    a filing reach internal services (SSRF).  A name that *resolves* to an internal address is
    not caught here (docs/webhooks.md)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise InvalidUrl("the URL must name a public host")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return
    if not address.is_global:
        raise InvalidUrl(
            "the URL must name a public host, not a private, loopback or reserved address"
        )


# --- secrets and signatures ----------------------------------------------------------------------


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (the Standard Webhooks secret format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_header(secrets_: Iterable[str], delivery_id: str, timestamp: int, body: str) -> str:
    """``webhook-signature``: one ``v1,<base64>`` per secret, separated by spaces."""
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return " ".join(Webhook(secret).sign(delivery_id, when, body) for secret in secrets_)


def headers(secrets_: Iterable[str], delivery_id: str, timestamp: int, body: str) -> dict[str, str]:
    """Every header of a delivery request."""
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, delivery_id, timestamp, body),
        "content-type": "application/json",
    }


# --- retries -------------------------------------------------------------------------------------


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based), with jitter."""
    base = BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]
    return base * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def next_attempt(
    attempts: int, window_start: float, now: float, rng: random.Random | None = None
) -> float | None:
    """When to try again after ``attempts`` failed attempts, or None to give up: after
    :data:`MAX_ATTEMPTS`, or when the next try would fall past :data:`MAX_AGE` from the start
    of the retry window."""
    if attempts >= MAX_ATTEMPTS:
        return None
    at = now + backoff(attempts, rng)
    return at if at - window_start <= MAX_AGE else None


def success(status_code: int) -> bool:
    """Rule: only a 2xx answer delivers (a redirect is not followed, and is a failure)."""
    return 200 <= status_code < 300
