"""Operators configure a client's webhook endpoint and read the delivery log: URLs are checked,
secrets are shown once and kept encrypted, unknown clients are 404, everything is audited with
ids only, and only client managers may do it."""

from __future__ import annotations

import time

import pytest

from ecard.webhooks.outbox import enqueue
from ecard.webhooks.tables import WebhookEndpoint
from tests.helpers import World, platform_of
from tests.webhooks.conftest import Partner, Receiver, put_endpoint


@pytest.mark.parametrize(
    "url",
    [
        "ftp://partner.example/hooks",
        "https://user:password@partner.example/hooks",
        "https://partner.example/hooks#fragment",
        "https:///no-host",
        "not a url",
        "javascript:alert(1)",
        "https://partner.example:99999/hooks",
        "https://partner.example/" + "a" * 2100,
    ],
)
async def test_a_bad_url_is_refused(client, world: World, url: str) -> None:
    response = await put_endpoint(client, world, world.channel["client_id"], url)
    assert response.status_code == 400, response.text
    assert response.json()["code"] in {"webhook_url_invalid", "validation_failed"}
    assert await WebhookEndpoint.count() == 0


async def test_an_endpoint_is_created_once_with_its_secret_then_updated(
    client, world: World, receiver: Receiver
) -> None:
    channel = world.channel["client_id"]
    created = await put_endpoint(client, world, channel, receiver.url)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (
        body["secret"].startswith("whsec_")
        and body["event_types"] == ["*"]
        and body["status"] == "active"
    )

    updated = await put_endpoint(
        client,
        world,
        channel,
        "https://partner.example/v2",
        event_types=["ecard.unbound", "card.replaced"],
    )
    assert updated.status_code == 200 and "secret" not in updated.json()
    assert updated.json()["event_types"] == ["card.replaced", "ecard.unbound"]
    assert updated.json()["url"] == "https://partner.example/v2"

    # the secret is stored encrypted, never in the clear
    row = await WebhookEndpoint.select().where(WebhookEndpoint.client == channel).first()
    assert body["secret"].encode() not in bytes(row["secret_enc"])
    assert body["secret"][6:].encode() not in bytes(row["secret_enc"])

    unknown_type = await put_endpoint(
        client, world, channel, receiver.url, event_types=["card.exploded"]
    )
    assert unknown_type.status_code == 400 and unknown_type.json()["code"] == "validation_failed"

    audit = await client.get(
        "/operator/v1/audit", params={"target_id": channel}, headers=world.op()
    )
    entries = [e for e in audit.json()["items"] if e["action"].startswith("webhook.")]
    assert {e["action"] for e in entries} == {"webhook.endpoint.create", "webhook.endpoint.update"}
    text = str(entries)
    assert "whsec_" not in text and "partner.example" not in text and "127.0.0.1" not in text


async def test_unknown_client_or_endpoint_is_404(client, world: World) -> None:
    missing = await put_endpoint(
        client, world, "ch_does_not_exist", "https://partner.example/hooks"
    )
    assert missing.status_code == 404 and missing.json()["code"] == "channel_not_found"
    rotate = await client.post(
        f"/operator/v1/clients/{world.channel['client_id']}/webhook/rotate-secret",
        json={},
        headers=world.op(),
    )
    assert rotate.status_code == 404 and rotate.json()["code"] == "webhook_not_configured"
    shown = await client.get(
        f"/operator/v1/clients/{world.channel['client_id']}/webhook", headers=world.op()
    )
    assert shown.status_code == 404 and shown.json()["code"] == "webhook_not_configured"


async def test_https_is_required_unless_http_is_allowed(client, world: World) -> None:
    platform = platform_of(client)
    import msgspec

    strict = msgspec.structs.replace(platform.settings, webhook_allow_http=False)
    original, platform.settings = platform.settings, strict
    try:
        refused = await put_endpoint(
            client, world, world.channel["client_id"], "http://partner.example/hooks"
        )
        assert refused.status_code == 400 and refused.json()["code"] == "webhook_url_invalid"
        accepted = await put_endpoint(
            client, world, world.channel["client_id"], "https://partner.example/hooks"
        )
        assert accepted.status_code == 201
    finally:
        platform.settings = original


async def test_the_delivery_log_is_paged_and_filtered(
    client, world: World, partner: Partner
) -> None:
    t0 = time.time()
    async with platform_of(client).engine.transaction():
        for i in range(5):
            await enqueue(
                "card.status_changed",
                partner.client_id,
                {"ecard_id": f"e{i}", "card_status": "lost"},
                at=t0 + i,
            )
        await enqueue(
            "ecard.unbound", partner.client_id, {"ecard_id": "u1", "by": "holder"}, at=t0 + 10
        )
    page = await client.get(
        "/operator/v1/webhook-deliveries", params={"limit": 2, "offset": 0}, headers=world.op()
    )
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 6 and len(body["items"]) == 2
    assert body["items"][0]["event_type"] == "ecard.unbound"  # newest first
    second = await client.get(
        "/operator/v1/webhook-deliveries", params={"limit": 2, "offset": 2}, headers=world.op()
    )
    assert not {i["id"] for i in body["items"]} & {i["id"] for i in second.json()["items"]}
    by_type = await client.get(
        "/operator/v1/webhook-deliveries",
        params={"event_type": "ecard.unbound", "status": "pending"},
        headers=world.op(),
    )
    assert [i["payload"]["data"]["ecard_id"] for i in by_type.json()["items"]] == ["u1"]
    other = await client.get(
        "/operator/v1/webhook-deliveries",
        params={"client_id": world.department["client_id"]},
        headers=world.op(),
    )
    assert other.json()["total"] == 0
    bad = await client.get(
        "/operator/v1/webhook-deliveries", params={"status": "exploded"}, headers=world.op()
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("role", ["registry_admin", "auditor", "readonly"])
async def test_only_client_managers_configure_webhooks(client, world: World, role: str) -> None:
    headers = world.op(role)
    channel = world.channel["client_id"]
    for method, path, body in (
        (
            "PUT",
            f"/operator/v1/clients/{channel}/webhook",
            {"url": "https://partner.example/hooks"},
        ),
        ("GET", f"/operator/v1/clients/{channel}/webhook", None),
        ("POST", f"/operator/v1/clients/{channel}/webhook/rotate-secret", {}),
        ("GET", "/operator/v1/webhook-deliveries", None),
        ("POST", "/operator/v1/webhook-deliveries/msg_x/redeliver", None),
    ):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
    anonymous = await client.get("/operator/v1/webhook-deliveries")
    assert anonymous.status_code == 401
