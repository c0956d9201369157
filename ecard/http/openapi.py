"""The OpenAPI document (``/schema/openapi.json``, the explorer at ``/schema/``) and the problem
responses (RFC 9457) every operation declares in it."""

from __future__ import annotations

from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from ecard import __version__
from ecard.errors import PROBLEM_JSON, Problem


def openapi_config() -> OpenAPIConfig:
    """The document's title, version and description, and where it and its explorer are served."""
    return OpenAPIConfig(
        title="ecard",
        version=__version__,
        description="Electronic social security card (电子社保卡) one-card platform API",
        path="/schema",
        render_plugins=[JsonRenderPlugin(path="/openapi.json"), SwaggerRenderPlugin(path="/")],
    )


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


#: The error responses every operation may give, declared once for the whole API (RFC 9457
#: ``application/problem+json``; the ``code`` member is a key of ``GET /problems``).
PROBLEM_RESPONSES: dict[str, ResponseSpec] = {
    "400": _problem(
        "Malformed or invalid request (validation_failed, malformed_request, or a domain rule)"
    ),
    "401": _problem(
        "Missing or invalid credentials (unauthenticated, invalid_credentials, token_invalid, …)"
    ),
    "403": _problem(
        "Authenticated, but not allowed (forbidden, wrong kind of caller or role, card not "
        "active, …)"
    ),
    "404": _problem("No such resource, or not one the caller may see"),
    "409": _problem(
        "The resource's state does not allow this (already answered, status conflict, replay, …)"
    ),
    "413": _problem("The request body is too large (body_too_large)"),
    "429": _problem(
        "Too many requests; retry after Retry-After seconds (rate_limited; "
        "temporarily_unavailable on OAuth endpoints)"
    ),
    "500": _problem("Internal server error (internal_error); never expected"),
    "503": _problem("A backing service is unavailable; retry after Retry-After seconds"),
}


class ProblemResponses(ReceiveRoutePlugin):
    """Declares :data:`PROBLEM_RESPONSES` in the OpenAPI document of every operation: 429, 500
    and 503 everywhere; 400, 401, 403 and 404 where the request carries anything the handler reads
    (parameters, a body, credentials, the raw request); 409 and 413 on state changes.  A route's
    own ``responses=`` add to these (and win on the same status)."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            params = set(handler.parsed_fn_signature.parameters) - {
                "platform",
                "codes",
                "terminals",
                "state",
                "scope",
            }
            statuses = {"429", "500", "503"}
            if (
                params
            ):  # parameters, a body, credentials, or the raw request (query, forms, signatures)
                statuses |= {"400", "401", "403", "404"}
            if handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"}:
                statuses |= {"409", "413"}  # state changes can conflict; bodies can be too large
            declared = {str(code): spec for code, spec in (handler.responses or {}).items()}
            handler.responses = {  # type: ignore[misc]
                **{code: spec for code, spec in PROBLEM_RESPONSES.items() if code in statuses},
                **declared,
            }


__all__ = ["PROBLEM_RESPONSES", "ProblemResponses", "openapi_config"]
