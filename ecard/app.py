"""``create_app(settings)``: the Litestar application with every domain's controllers mounted."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, NamedTuple

import msgspec
from litestar import Controller, Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins import ReceiveRoutePlugin
from litestar.plugins.prometheus import PrometheusController
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import Receive, Scope, Send

from ecard import __version__
from ecard.dependencies import PLATFORM
from ecard.edge import SECURITY_HEADER_LIST, EdgeMiddleware, serve_at_edge
from ecard.errors import (
    CATALOGUE,
    EXCEPTION_HANDLERS,
    PROBLEM_JSON,
    AppError,
    Problem,
    exception_response,
)
from ecard.logs import configure_logging
from ecard.platform import Platform, open_platform
from ecard.settings import Settings
from ecard.store import db


class JWKS(msgspec.Struct):
    keys: list[dict[str, str]]


class Health(msgspec.Struct):
    status: str
    version: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


class SystemController(Controller):
    tags = ["system"]

    @get("/healthz", summary="Process is up")
    async def healthz(self) -> Health:
        return Health(status="ok", version=__version__)

    @get("/readyz", summary="Database, ephemeral store and ledger reachable")
    async def readyz(self, platform: NamedDependency[Platform]) -> Response[Readiness]:
        checks: dict[str, str] = {}
        for name, probe in (("database", db.ping(platform.engine)), ("store", platform.store.ping())):
            try:
                await probe
                checks[name] = "ok"
            except Exception as exc:  # a readiness probe reports, it does not raise
                checks[name] = f"unavailable: {type(exc).__name__}"
        checks["ledger"] = "ok (local)" if not platform.settings.ledger_rpc_url else "ok"
        ready = all(v.startswith("ok") for v in checks.values())
        return Response(
            Readiness(status="ready" if ready else "unavailable", checks=checks),
            status_code=200 if ready else 503,
            headers={} if ready else {"Retry-After": "5"},
        )

    @get("/.well-known/jwks.json", summary="Public keys that sign codes, e-licenses and ID tokens")
    async def jwks(self, request: Request, platform: NamedDependency[Platform]) -> Response:
        keys = [k.public_jwk() for k in platform.keys.ring.verification_keys()]
        return etagged(request, msgspec.json.encode(JWKS(keys=keys)), max_age=300)

    @get("/problems", summary="The error catalogue: every code, its HTTP status and messages")
    async def problems(self) -> dict[str, dict[str, object]]:
        return {code: {"status": s.status, "zh-CN": s.zh, "en": s.en} for code, s in CATALOGUE.items()}


def etagged(request: Request, body: bytes, *, max_age: int, media_type: str = "application/json") -> Response:
    """A response with a strong ETag; ``If-None-Match`` with the same tag gets 304 and no body."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={max_age}"}
    if tag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


class JsonReply:
    """A JSON response already encoded, as a plain ASGI app: the hot handlers (a code, a
    verification) return it instead of a ``Response``, whose building costs Litestar more than
    the handler's own work.  Such a handler declares its body in ``responses=`` for OpenAPI."""

    __slots__ = ("_body", "_headers", "_status")

    def __init__(self, content: object, status: int, headers: dict[str, str]) -> None:
        self._body = msgspec.json.encode(content)
        self._status = status
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]

    @property
    def status(self) -> int:
        return self._status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send_to(send)

    async def send_to(self, send: Send, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = self._headers + extra_headers if extra_headers else self._headers
        await send({"type": "http.response.start", "status": self._status, "headers": headers})
        await send({"type": "http.response.body", "body": self._body})


class HotRoute(NamedTuple):
    """A route :class:`EcardApp` serves itself: the handler takes the app's state, the
    Authorization header and the request body.  A route that reads no body does not wait for one
    (each ``receive`` is a round trip through the server)."""

    handler: Callable[[State, str | None, bytes], Awaitable[JsonReply]]
    reads_body: bool = True


class EcardApp(Litestar):
    """Litestar, with the few routes every holder and verifier call all day served before its
    routing: there, Litestar's routing, request parsing, dependency injection and response
    building cost more than the work itself (a code signed, a code verified).

    A hot route is still declared as a Litestar handler, for the OpenAPI document; both call the
    same function.  It keeps the edge (request id, access log, metrics, security headers) and the
    error catalogue (an exception becomes the same problem response)."""

    def __init__(self, *args: Any, hot_routes: dict[tuple[str, str], HotRoute], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot_routes = hot_routes

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self._hot_routes and not scope.get("root_path"):
            scope["app"] = scope["litestar_app"] = self
            scope["path_template"] = scope["path"]

            async def respond(request_id: str) -> int:
                return await self._serve_hot(scope, receive, send, request_id)

            await serve_at_edge(scope, respond)
            return
        await super().__call__(scope, receive, send)

    async def _serve_hot(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> int:
        """Answer a hot route with the edge's headers added; return the status sent."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            route = self._hot_routes[scope["method"], scope["path"]]
            body = await self._read_body(receive) if route.reads_body else b""
            reply = await route.handler(self.state, authorization, body)
        except Exception as exc:  # noqa: BLE001 - answered from the error catalogue, as in Litestar
            request: Request = Request(scope, receive)
            problem = exception_response(request, exc)  # it carries the security headers itself
            await problem.to_asgi_response(app=None, request=request, headers={"X-Request-ID": request_id})(
                scope, receive, send
            )
            return problem.status_code
        await reply.send_to(send, [*SECURITY_HEADER_LIST, (b"x-request-id", request_id.encode())])
        return reply.status

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                raise AppError("malformed_request", "the request body was cut short")
            chunk = message.get("body", b"")
            size += len(chunk)
            if self.request_max_body_size is not None and size > self.request_max_body_size:
                raise AppError("body_too_large")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class MetricsController(PrometheusController):
    path = "/metrics"

    @get(media_type="text/plain", summary="Prometheus metrics (text exposition format)")
    async def get(self) -> Response:
        return await PrometheusController.get.fn(self)


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False)


#: The error responses every operation may give, declared once for the whole API (RFC 9457
#: ``application/problem+json``; the ``code`` member is a key of ``GET /problems``).
PROBLEM_RESPONSES: dict[str, ResponseSpec] = {
    "400": _problem("Malformed or invalid request (validation_failed, malformed_request, or a domain rule)"),
    "401": _problem("Missing or invalid credentials (unauthenticated, invalid_credentials, token_invalid, …)"),
    "403": _problem("Authenticated, but not allowed (forbidden, wrong kind of caller or role, card not active, …)"),
    "404": _problem("No such resource, or not one the caller may see"),
    "409": _problem("The resource's state does not allow this (already answered, status conflict, replay, …)"),
    "413": _problem("The request body is too large (body_too_large)"),
    "429": _problem("Too many requests; retry after Retry-After seconds (rate_limited; temporarily_unavailable on OAuth endpoints)"),
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
            params = set(handler.parsed_fn_signature.parameters) - {"platform", "codes", "terminals", "state", "scope"}
            statuses = {"429", "500", "503"}
            if params:  # parameters, a body, credentials, or the raw request (query, forms, signatures)
                statuses |= {"400", "401", "403", "404"}
            if handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"}:
                statuses |= {"409", "413"}  # state changes can conflict; bodies can be too large
            declared = {str(code): spec for code, spec in (handler.responses or {}).items()}
            handler.responses = {  # type: ignore[misc]
                **{code: spec for code, spec in PROBLEM_RESPONSES.items() if code in statuses},
                **declared,
            }


#: Domain modules whose ``CONTROLLERS`` list is mounted, in this order.
DOMAINS = ["ecard.registry.controllers", "ecard.oidc.controllers", "ecard.codes.controllers", "ecard.consent.controllers", "ecard.terminal.controllers"]


def domain_controllers() -> list:
    return [c for module in DOMAINS for c in importlib.import_module(module).CONTROLLERS]


def domain_hot_routes() -> dict[tuple[str, str], HotRoute]:
    """Each domain's optional ``HOT_ROUTES``: (method, path) -> handler, served by :class:`EcardApp`."""
    modules = [importlib.import_module(module) for module in DOMAINS]
    return {route: handler for m in modules for route, handler in getattr(m, "HOT_ROUTES", {}).items()}


def domain_background_tasks() -> list:
    """Each domain's optional ``background(platform)`` async context manager (sealers, relays,
    workers): entered after the platform opens, left before it closes."""
    modules = [importlib.import_module(module) for module in DOMAINS]
    return [m.background for m in modules if hasattr(m, "background")]


def create_app(settings: Settings, platform: Platform | None = None) -> Litestar:
    """The application; ``platform`` may be passed in by tests that share one across apps."""
    configure_logging(settings.log_level, json_output=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = platform is None
        app.state.platform = platform or await open_platform(settings)
        try:
            async with AsyncExitStack() as background:
                for run in domain_background_tasks():
                    await background.enter_async_context(run(app.state.platform))
                yield
        finally:
            if owned:
                await app.state.platform.close()

    return EcardApp(
        hot_routes=domain_hot_routes(),
        route_handlers=[SystemController, MetricsController, *domain_controllers()],
        dependencies=PLATFORM,
        lifespan=[lifespan],
        state=State({}),
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[ProblemResponses()],
        middleware=[EdgeMiddleware()],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="ecard",
            version=__version__,
            description="Electronic social security card (电子社保卡) one-card platform API",
            path="/schema",
            render_plugins=[JsonRenderPlugin(path="/openapi.json"), SwaggerRenderPlugin(path="/")],
        ),
        logging_config=None,
        debug=False,
    )


__all__ = ["AppError", "create_app"]
