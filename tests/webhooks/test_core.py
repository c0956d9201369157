"""The pure rules of webhooks: event catalogue, payloads, URLs, secrets, signatures, retries."""

from __future__ import annotations

import base64
import json
import random
import time

import pytest
from standardwebhooks import Webhook

from ecard.webhooks import core


def test_the_catalogue_and_payload_shape() -> None:
    assert core.EVENT_TYPES == (
        "card.status_changed",
        "card.replaced",
        "ecard.unbound",
        "ecard.issued_elsewhere",
        "person.deceased",
    )
    body = json.loads(core.payload("card.replaced", {"ecard_id": "e1"}, 1_796_306_400.5))
    assert body == {
        "type": "card.replaced",
        "timestamp": "2026-12-03T14:00:00.500Z",
        "data": {"ecard_id": "e1"},
    }
    with pytest.raises(ValueError):
        core.check_event_type("card.exploded")
    assert core.normalize_event_types(None) == ["*"]
    assert core.normalize_event_types(["card.replaced", "*"]) == ["*"]
    assert core.subscribed(["*"], "person.deceased") and not core.subscribed(
        ["card.replaced"], "person.deceased"
    )
    with pytest.raises(ValueError):
        core.normalize_event_types([])


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://partner.example/hooks?x=1", False, True),
        ("https://[::1]:8443/hooks", False, False),  # loopback: SSRF into the platform's own host
        ("https://[::1]:8443/hooks", True, True),  # development and tests allow it
        ("https://10.0.0.5/hooks", False, False),
        ("https://169.254.169.254/latest/meta-data", False, False),  # cloud metadata
        ("https://localhost/hooks", False, False),
        ("https://203.0.113.9/hooks", False, False),  # documentation range: not global
        ("https://8.8.8.8/hooks", False, True),
        ("http://partner.example/hooks", False, False),
        ("http://127.0.0.1:8080/hooks", True, True),
        ("HTTPS://partner.example/", False, True),
        ("https://u@partner.example/", False, False),
        ("https://partner.example/#x", False, False),
        ("https://partner.example/#", False, False),
        ("https://partner.example/a b", False, False),
        ("https://partner.example/\x00", False, False),
        ("file:///etc/passwd", True, False),
        ("//partner.example/hooks", True, False),
        ("", True, False),
    ],
)
def test_endpoint_urls(url: str, allow_http: bool, ok: bool) -> None:
    if ok:
        assert core.check_url(url, allow_http=allow_http) == url
    else:
        with pytest.raises(core.InvalidUrl):
            core.check_url(url, allow_http=allow_http)


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = core.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert core.new_secret() != secret


def test_the_signature_header_carries_one_signature_per_secret_and_each_verifies() -> None:
    old, new = core.new_secret(), core.new_secret()
    body, now = core.payload("ecard.unbound", {"ecard_id": "e1"}, time.time()), int(time.time())
    headers = core.headers([new, old], "msg_1", now, body)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(now)
    assert [s[:3] for s in headers["webhook-signature"].split(" ")] == ["v1,", "v1,"]
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["data"] == {"ecard_id": "e1"}


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [core.backoff(n, rng) for n in range(1, 20)]
    for n, delay in enumerate(delays, start=1):
        base = core.BACKOFF[min(n, len(core.BACKOFF)) - 1]
        assert base * (1 - core.JITTER) <= delay <= base * (1 + core.JITTER)
    assert max(delays) <= core.BACKOFF[-1] * (1 + core.JITTER)


def test_retries_end_after_the_attempt_budget_or_the_age_limit() -> None:
    assert core.next_attempt(core.MAX_ATTEMPTS, 0.0, 10.0) is None
    assert core.next_attempt(1, 0.0, 0.0) is not None
    assert (
        core.next_attempt(3, 0.0, core.MAX_AGE - 1) is None
    )  # the next try would fall past 3 days
    now, attempts = 0.0, 0
    while (at := core.next_attempt(attempts + 1, 0.0, now, random.Random(attempts))) is not None:
        attempts, now = attempts + 1, at
    assert attempts < core.MAX_ATTEMPTS and now <= core.MAX_AGE


def test_payload_data_is_ids_and_statuses_only() -> None:
    core.check_data(
        {"ecard_id": "e1", "card_status": "lost", "hce_reprovision": True, "n": 1, "x": None}
    )
    for bad in (
        {"name": "张三"},
        {"Identity_Number": "1"},
        {"list": [1]},
        {"long": "x" * 200},
        {str(i): i for i in range(20)},
    ):
        with pytest.raises(ValueError):
            core.check_data(bad)
