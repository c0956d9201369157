"""Shape of the hot paths, checked without timing anything (timings live in scripts/bench/)."""

from __future__ import annotations

import pytest
from litestar.types import ASGIApp

from ecard.app import create_app
from ecard.settings import Settings

#: requests every holder and verifier makes all day long
HOT = [("/holder/v1/codes", "POST"), ("/verifier/v1/verifications", "POST")]


@pytest.mark.parametrize(("path", "method"), HOT)
def test_hot_endpoints_skip_dependency_injection_and_response_building(settings: Settings, path: str, method: str) -> None:
    """Litestar resolves independent dependencies in a task group (litestar-org/litestar#4563) and
    builds a ``Response`` per request; on these two endpoints each costs more than the work."""
    handler = create_app(settings).route_handler_method_map[path][method]
    assert not handler.create_kwargs_model(path_parameters={}).dependency_batches
    assert handler.parsed_fn_signature.return_type.annotation is ASGIApp


@pytest.mark.parametrize(("path", "method", "status", "schema"), [(*HOT[0], "201", "CodeIssued"), (*HOT[1], "200", "VerificationResult")])
def test_hot_endpoints_still_document_their_answer(settings: Settings, path: str, method: str, status: str, schema: str) -> None:
    document = create_app(settings).openapi_schema.to_schema()
    answer = document["paths"][path][method.lower()]["responses"][status]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith(schema)
