"""Security headers on the pages people open in a browser: the service-hall verifier page, the
scan-to-login page (``/oidc/authorize``) and the API explorer (``/schema/``); and the baseline
headers every API response carries."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

import httpx
import pytest

from tests.helpers import World

pytestmark = pytest.mark.parametrize("settings", ["embedded"], indirect=True)


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        if part.strip():
            name, *values = part.split()
            parsed[name] = values
    return parsed


def assert_page_secured(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in {
        "no-referrer",
        "same-origin",
        "strict-origin-when-cross-origin",
    }
    assert response.headers["x-frame-options"] == "DENY"
    csp = directives(response.headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert "*" not in csp["script-src"]
    return csp


async def test_verifier_page(client: httpx.AsyncClient) -> None:
    csp = assert_page_secured(await client.get("/verifier/"))
    assert csp["script-src"] == ["'self'"]


async def test_login_page(client: httpx.AsyncClient, world: World) -> None:
    filed = await client.post(
        "/operator/v1/oidc/clients",
        json={
            "name": f"rp-{uuid.uuid4().hex[:8]}",
            "redirect_uris": ["https://rp.example.test/callback"],
            "scopes": ["openid", "profile"],
            "client_type": "confidential",
            "token_endpoint_auth_method": "client_secret_basic",
        },
        headers=world.op(),
    )
    client_id = filed.json()["client_id"]
    for status in ("approved", "live"):
        await client.post(
            f"/operator/v1/oidc/clients/{client_id}/status",
            json={"status": status},
            headers=world.op(),
        )
    response = await client.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "https://rp.example.test/callback",
            "scope": "openid profile",
            "state": "s" * 16,
            "nonce": "n" * 16,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
    )
    csp = assert_page_secured(response)
    assert csp["script-src"] == ["'self'"]
    assert "'self'" in csp["form-action"]


async def test_login_error_page(client: httpx.AsyncClient) -> None:
    """The page shown for a bad request (unknown client) is secured alike."""
    response = await client.get(
        "/oidc/authorize", params={"client_id": "nobody", "response_type": "code"}
    )
    assert response.headers["content-type"].startswith("text/html")
    assert directives(response.headers["content-security-policy"])["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_api_explorer(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/")
    csp = assert_page_secured(response)
    # the one inline script (it embeds the document) is allowed by its hash, nothing else inline
    inline = re.findall(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", response.content, re.DOTALL)
    assert inline
    for script in inline:
        digest = "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        assert digest in csp["script-src"]
    sources = [s for s in csp["script-src"] if not s.startswith("'sha256-")]
    assert sources == ["https://cdn.jsdelivr.net"]


@pytest.mark.parametrize(
    "path", ["/healthz", "/schema/openapi.json", "/operator/v1/persons", "/nowhere"]
)
async def test_api_responses_carry_baseline_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
