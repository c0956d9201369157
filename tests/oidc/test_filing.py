"""应用目录备案: an administrator files a relying party; it is pending, approved, then live, and
only a live client can log anyone in."""

from __future__ import annotations

from tests.oidc.conftest import REDIRECT_URI, file_client

FILING = {
    "name": "社保服务网站",
    "redirect_uris": [REDIRECT_URI],
    "scopes": ["openid", "profile"],
    "client_type": "confidential",
    "token_endpoint_auth_method": "client_secret_basic",
}


async def authorize(client, client_id: str):
    return await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
        },
    )


async def test_a_filed_client_goes_live_only_after_approval(client, world):
    rp = await file_client(world, live=False)
    path = f"/operator/v1/oidc/clients/{rp.client_id}"
    assert rp.client_secret and rp.client_secret.startswith("ecrp_")
    assert (await authorize(client, rp.client_id)).status_code == 403  # pending
    assert (
        await client.post(f"{path}/status", json={"status": "live"}, headers=world.op())
    ).status_code == 409
    assert (
        await client.post(f"{path}/status", json={"status": "approved"}, headers=world.op())
    ).status_code == 200
    assert (await authorize(client, rp.client_id)).status_code == 403  # approved, not yet live
    assert (
        await client.post(f"{path}/status", json={"status": "live"}, headers=world.op())
    ).status_code == 200
    assert (await authorize(client, rp.client_id)).status_code == 200
    view = (await client.get(path, headers=world.op("readonly"))).json()
    assert (
        view["status"] == "live"
        and "client_secret" not in view
        and view["sector"] == "rp.example.test"
    )
    trail = await client.get(
        "/operator/v1/audit", params={"target_id": rp.client_id}, headers=world.op("auditor")
    )
    assert [e["action"] for e in trail.json()["items"]][-3:] == [
        "oidc.client.status",
        "oidc.client.status",
        "oidc.client.file",
    ]


async def test_only_administrators_file_and_approve(client, world):
    for role in ("registry_admin", "auditor", "readonly"):
        response = await client.post(
            "/operator/v1/oidc/clients", json=FILING | {"name": f"x-{role}"}, headers=world.op(role)
        )
        assert response.status_code == 403
    assert (await client.post("/operator/v1/oidc/clients", json=FILING)).status_code == 401
    rp = await file_client(world, live=False)
    denied = await client.post(
        f"/operator/v1/oidc/clients/{rp.client_id}/status",
        json={"status": "approved"},
        headers=world.op("auditor"),
    )
    assert denied.status_code == 403


async def test_a_filing_that_breaks_a_rule_is_refused_with_a_reason(client, world):
    for change in (
        {"redirect_uris": ["http://rp.example.test/cb"]},  # plain http off loopback
        {"redirect_uris": ["https://rp.example.test/cb#frag"]},
        {
            "redirect_uris": ["https://a.example.test/cb", "https://b.example.test/cb"]
        },  # two sectors
        {"scopes": ["openid", "bank_account"]},
        {"scopes": ["profile"]},
        {"client_type": "public"},  # with a secret method
        {"token_endpoint_auth_method": "none"},  # confidential without authentication
        {"token_endpoint_auth_method": "private_key_jwt"},  # without a key
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        },
        {"logo_uri": "http://rp.example.test/logo.png"},
    ):
        response = await client.post(
            "/operator/v1/oidc/clients", json=FILING | change, headers=world.op()
        )
        assert response.status_code == 400, change
        assert response.json()["code"] in ("invalid_client_metadata", "validation_failed")


async def test_loopback_redirects_are_allowed_for_native_clients(client, world):
    rp = await file_client(
        world,
        client_type="public",
        token_endpoint_auth_method="none",
        redirect_uris=["http://127.0.0.1:7000/cb"],
    )
    assert rp.client_secret is None


async def test_names_are_unique_and_unknown_clients_are_not_found(client, world):
    assert (
        await client.post("/operator/v1/oidc/clients", json=FILING, headers=world.op())
    ).status_code == 201
    assert (
        await client.post("/operator/v1/oidc/clients", json=FILING, headers=world.op())
    ).status_code == 400
    assert (
        await client.get("/operator/v1/oidc/clients/rp_nope", headers=world.op())
    ).status_code == 404


async def test_a_suspended_client_can_go_live_again_but_a_rejected_one_cannot(client, world):
    rp = await file_client(world)
    path = f"/operator/v1/oidc/clients/{rp.client_id}/status"
    assert (
        await client.post(path, json={"status": "suspended"}, headers=world.op())
    ).status_code == 200
    assert (await client.post(path, json={"status": "live"}, headers=world.op())).status_code == 200
    rejected = await file_client(world, live=False)
    reject_path = f"/operator/v1/oidc/clients/{rejected.client_id}/status"
    assert (
        await client.post(reject_path, json={"status": "rejected"}, headers=world.op())
    ).status_code == 200
    assert (
        await client.post(reject_path, json={"status": "approved"}, headers=world.op())
    ).status_code == 409
