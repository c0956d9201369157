"""Health, readiness, metrics, OpenAPI, JWKS, and the error catalogue for bad requests."""

from __future__ import annotations

import pytest

from tests.helpers import World


async def test_health_readiness_and_metrics(world: World) -> None:
    client = world.client
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["store"] == "ok"
    await client.get("/healthz")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and 'litestar_requests_total{app_name="ecard"' in metrics.text
    assert "x-request-id" in ready.headers


async def test_openapi_document_lists_the_registry(world: World) -> None:
    schema = (await world.client.get("/schema/openapi.json")).json()
    assert "/channel/v1/ecards" in schema["paths"] and "/operator/v1/persons" in schema["paths"]


async def test_jwks_is_cached_by_etag(world: World) -> None:
    first = await world.client.get("/.well-known/jwks.json")
    assert first.status_code == 200 and first.json()["keys"][0]["alg"] == "ES256"
    again = await world.client.get(
        "/.well-known/jwks.json", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/no/such/route", {}, 404, "not_found"),
        ("delete", "/healthz", {}, 405, "method_not_allowed"),
        (
            "post",
            "/operator/v1/login",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            None,
        ),
        (
            "post",
            "/operator/v1/login",
            {"json": {"username": 1, "password": []}},
            400,
            "validation_failed",
        ),
        (
            "post",
            "/operator/v1/login",
            {"json": {"username": "a", "password": "b", "extra": 1}},
            400,
            "validation_failed",
        ),
        (
            "post",
            "/operator/v1/login",
            {"content": b"x" * 2_000_000, "headers": {"content-type": "application/json"}},
            413,
            "body_too_large",
        ),
    ],
)
async def test_bad_requests_get_clear_problems_never_500(
    world: World, method, path, kwargs, status, code
) -> None:
    response = await getattr(world.client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["code"]
    if code:
        assert body["code"] == code


async def test_problem_messages_follow_accept_language(world: World) -> None:
    zh = await world.client.get("/no/such/route")
    en = await world.client.get(
        "/no/such/route", headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}
    )
    assert zh.json()["title"] == "请求的资源不存在" and zh.headers["content-language"] == "zh-CN"
    assert en.json()["title"] == "The requested resource does not exist"
