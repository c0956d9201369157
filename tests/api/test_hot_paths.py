"""Shape of the hot paths, checked without timing anything (timings live in scripts/bench/)."""

from __future__ import annotations

import pytest
from litestar.types import ASGIApp

from ecard.app import create_app
from ecard.settings import Settings
from tests.helpers import World

#: requests every holder and verifier makes all day long
HOT = [("/holder/v1/codes", "POST"), ("/verifier/v1/verifications", "POST")]


@pytest.mark.parametrize(("path", "method"), HOT)
def test_hot_endpoints_skip_dependency_injection_and_response_building(
    settings: Settings, path: str, method: str
) -> None:
    """Litestar resolves independent dependencies in a task group (litestar-org/litestar#4563) and
    builds a ``Response`` per request; on these two endpoints each costs more than the work."""
    handler = create_app(settings).route_handler_method_map[path][method]
    assert not handler.create_kwargs_model(path_parameters={}).dependency_batches
    assert handler.parsed_fn_signature.return_type.annotation is ASGIApp


@pytest.mark.parametrize(
    ("path", "method", "status", "schema"),
    [(*HOT[0], "201", "CodeIssued"), (*HOT[1], "200", "VerificationResult")],
)
def test_hot_endpoints_still_document_their_answer(
    settings: Settings, path: str, method: str, status: str, schema: str
) -> None:
    document = create_app(settings).openapi_schema.to_schema()
    answer = document["paths"][path][method.lower()]["responses"][status]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith(schema)


async def test_hot_endpoints_refuse_like_every_other_route(world: World) -> None:
    """Served before Litestar's routing, the hot endpoints still answer from the error catalogue,
    with the edge's request id and security headers; a stranger learns nothing of its body."""
    for path in ("/holder/v1/codes", "/verifier/v1/verifications"):
        response = await world.client.post(path, content=b"not json")
        assert response.status_code == 401, response.text
        problem = response.json()
        assert (
            problem["code"] == "unauthenticated"
            and problem["request_id"] == response.headers["x-request-id"]
        )
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (
            response.headers["x-content-type-options"] == "nosniff"
            and "www-authenticate" in response.headers
        )
    too_large = await world.client.post(
        "/verifier/v1/verifications", content=b"x" * (2 * 1024 * 1024)
    )
    assert too_large.status_code == 413 and too_large.json()["code"] == "body_too_large"


async def test_a_trailing_slash_reaches_the_same_handler_through_litestar(world: World) -> None:
    """The Litestar handlers that document the hot endpoints answer what the hot path does not
    take, with the same function."""
    slash = await world.client.post("/holder/v1/codes/")
    assert slash.status_code == 401 and slash.json()["code"] == "unauthenticated"
