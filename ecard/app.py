"""``create_app(settings)``: the Litestar application with every domain's controllers mounted."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
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
from litestar.response.base import ASGIResponse
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import ControllerRouterHandler, Receive, Scope, Send

from ecard import __version__
from ecard.bodies import BodySafeRequest
from ecard.auth import DpopContext
from ecard.dependencies import PLATFORM
from ecard.edge import (
    SECURITY_HEADER_PAIRS,
    EdgeMiddleware,
    behind_proxy,
    request_finished,
    request_id_of,
    request_started,
    valid_request_id,
)
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
from ecard.proxy import TrustedProxies, parse_trusted_proxies
from ecard.rsgi import AsgiSend, Lifespan, RsgiScope, asgi_receive, asgi_scope, call_asgi
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
        for name, probe in (
            ("database", db.ping(platform.engine)),
            ("store", platform.store.ping()),
        ):
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
        return {
            code: {"status": s.status, "zh-CN": s.zh, "en": s.en} for code, s in CATALOGUE.items()
        }


def etagged(
    request: Request, body: bytes, *, max_age: int, media_type: str = "application/json"
) -> Response:
    """A response with a strong ETag; ``If-None-Match`` with the same tag gets 304 and no body."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={max_age}"}
    if tag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


def json_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    """The headers of a :class:`JsonReply`, built once per kind of reply: the JSON media type,
    the security headers the edge would add, and ``headers``."""
    return [
        ("content-type", "application/json"),
        *SECURITY_HEADER_PAIRS,
        *((name.lower(), value) for name, value in headers.items()),
    ]


class JsonReply:
    """A JSON response already encoded: the hot handlers (a code, a verification) return it
    instead of a ``Response``, whose building costs Litestar more than the handler's own work.
    :class:`EcardApp` sends it in RSGI or ASGI, adding ``x-request-id``; as a plain ASGI app it
    answers the same handlers' Litestar routes, which declare its body in ``responses=`` for
    OpenAPI.  ``headers`` come from :func:`json_headers`."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, content: object, status: int, headers: list[tuple[str, str]]) -> None:
        self.body = msgspec.json.encode(content)
        self.status = status
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send_to(send, [])

    async def send_to(self, send: Send, extra_headers: list[tuple[str, str]]) -> None:
        headers = [
            (name.encode(), value.encode()) for name, value in (*self.headers, *extra_headers)
        ]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class HotRoute(NamedTuple):
    """A route :class:`EcardApp` serves itself: the handler takes the app's state, the
    Authorization header and the request body.  A route that reads no body does not wait for one.
    A route with ``dpop`` also gets ``dpop=`` the request's :class:`ecard.auth.DpopContext` (its
    method, path and ``DPoP`` headers), for holder tokens bound to a device key."""

    handler: Callable[..., Awaitable[JsonReply]]
    reads_body: bool = True
    dpop: bool = False


class EcardApp(Litestar):
    """Litestar, with the few routes every holder and verifier call all day served before its
    routing: there, Litestar's routing, request parsing, dependency injection and response
    building cost more than the work itself (a code signed, a code verified).

    Served by granian in RSGI (:mod:`ecard.rsgi`): the hot routes are answered in RSGI directly,
    every other request is bridged to Litestar's ASGI.  As a plain ASGI app (tests, other
    servers) the hot routes are answered the same way in ASGI.

    A hot route is still declared as a Litestar handler, for the OpenAPI document; both call the
    same function.  It keeps the edge (request id, access log, metrics, security headers) and the
    error catalogue (an exception becomes the same problem response)."""

    def __init__(
        self,
        *args: Any,
        hot_routes: dict[tuple[str, str], HotRoute],
        trusted_proxies: TrustedProxies | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._hot_routes = hot_routes
        self._trusted_proxies = (
            trusted_proxies or TrustedProxies()
        )  # the edge: see ecard.edge.behind_proxy
        self._rsgi_lifespan = Lifespan(super().__call__)

    # --- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if (
            self._trusted_proxies and scope["type"] == "http"
        ):  # also every request bridged from RSGI
            behind_proxy(scope, self._trusted_proxies)
        route = (
            self._hot_routes.get((scope["method"], scope["path"]))
            if scope["type"] == "http"
            else None
        )
        if route is None or scope.get("root_path"):
            await super().__call__(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        request_id = request_id_of(scope)
        started = request_started(method, path)
        status = 500
        try:
            dpop = (
                DpopContext(method, path, _all_headers(scope["headers"], b"dpop"))
                if route.dpop
                else None
            )
            reply = await self._answer(
                route,
                _authorization(scope["headers"]),
                lambda: self._read_body(receive),
                lambda: scope,
                dpop,
            )
            if isinstance(reply, JsonReply):
                status = reply.status
                await reply.send_to(send, [("x-request-id", request_id)])
            else:
                status = reply.status_code
                await reply(scope, receive, send)
        finally:
            request_finished(request_id, method, path, status, started)

    # --- RSGI (granian) -----------------------------------------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._rsgi_lifespan.startup(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._rsgi_lifespan.shutdown(loop)

    async def __rsgi__(self, scope: RsgiScope, protocol: Any) -> None:
        if scope.proto != "http":  # no websocket routes
            protocol.close(1008)
            return
        method, path = scope.method, scope.path
        route = self._hot_routes.get((method, path))
        if route is None:
            await call_asgi(self, scope, protocol)
            return
        headers = scope.headers
        request_id = valid_request_id(headers.get("x-request-id"))
        started = request_started(method, path)
        status = 500
        try:
            reply = await self._answer(
                route,
                headers.get("authorization"),
                lambda: self._read_rsgi_body(headers, protocol),
                lambda: self._behind_proxy(asgi_scope(scope, {"request_id": request_id})),
                DpopContext(method, path, tuple(headers.get_all("dpop"))) if route.dpop else None,
            )
            if isinstance(reply, JsonReply):
                status = reply.status
                protocol.response_bytes(
                    status, [*reply.headers, ("x-request-id", request_id)], reply.body
                )
            else:
                status = reply.status_code
                await reply(asgi_scope(scope), asgi_receive(protocol), AsgiSend(protocol))  # type: ignore[arg-type]
        finally:
            request_finished(request_id, method, path, status, started)

    def _behind_proxy(self, scope: Any) -> Any:
        behind_proxy(scope, self._trusted_proxies)
        return scope

    async def _read_rsgi_body(self, headers: Any, protocol: Any) -> bytes:
        """A body of declared length (the usual case) in one call, refused at once when it is over
        the limit; one of undeclared length in chunks, the limit checked as they come."""
        try:
            declared = int(headers.get("content-length") or "")
        except ValueError:
            return await self._read_body(asgi_receive(protocol))
        if self.request_max_body_size is not None and declared > self.request_max_body_size:
            raise AppError("body_too_large")
        try:
            return await protocol()
        except Exception:  # noqa: BLE001 - granian raises when the client went away mid-body
            raise AppError("malformed_request", "the request body was cut short") from None

    # --- both ---------------------------------------------------------------------------
    async def _answer(
        self,
        route: HotRoute,
        authorization: str | None,
        read_body: Callable[[], Awaitable[bytes]],
        scope_of: Callable[[], Scope],
        dpop: DpopContext | None = None,
    ) -> JsonReply | ASGIResponse:
        """The handler's reply, or the error catalogue's answer to what it raised (only then is
        the request's ASGI scope needed: ``scope_of`` gives it)."""
        try:
            body = await read_body() if route.reads_body else b""
            if dpop is not None:
                return await route.handler(self.state, authorization, body, dpop=dpop)
            return await route.handler(self.state, authorization, body)
        except Exception as exc:  # noqa: BLE001 - answered from the error catalogue, as in Litestar
            scope = scope_of()
            scope["app"] = scope["litestar_app"] = self
            request: Request = Request(scope)
            request_id = scope["state"]["request_id"]
            # the problem carries the security headers itself
            return exception_response(request, exc).to_asgi_response(
                app=None, request=request, headers={"X-Request-ID": request_id}
            )

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


def _all_headers(headers: list[tuple[bytes, bytes]], wanted: bytes) -> tuple[str, ...]:
    """Every value of the (lowercase) header ``wanted``, in order."""
    return tuple(value.decode("latin-1") for name, value in headers if name == wanted)


def _authorization(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class MetricsController(PrometheusController):
    path = "/metrics"

    @get(media_type="text/plain", summary="Prometheus metrics (text exposition format)")
    async def get(self) -> Response:
        return await PrometheusController.get.fn(self)


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
        "Authenticated, but not allowed (forbidden, wrong kind of caller or role, card not active, …)"
    ),
    "404": _problem("No such resource, or not one the caller may see"),
    "409": _problem(
        "The resource's state does not allow this (already answered, status conflict, replay, …)"
    ),
    "413": _problem("The request body is too large (body_too_large)"),
    "429": _problem(
        "Too many requests; retry after Retry-After seconds (rate_limited; temporarily_unavailable on OAuth endpoints)"
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


def domain_controllers() -> list[ControllerRouterHandler]:
    """Every domain's controllers, in the order of ``ecard.domains.DOMAINS``."""
    # imported here, not above: the domains' controllers import this module
    from ecard.domains import DOMAINS

    return [c for domain in DOMAINS for c in domain.controllers]


def domain_hot_routes() -> dict[tuple[str, str], HotRoute]:
    """Every domain's ``hot_routes``: (method, path) -> handler, served by :class:`EcardApp`."""
    from ecard.domains import DOMAINS

    return {route: handler for domain in DOMAINS for route, handler in domain.hot_routes.items()}


def domain_background_tasks() -> list[Callable[[Platform], AbstractAsyncContextManager[None]]]:
    """Every domain's optional ``background(platform)`` async context manager (sealers, relays,
    workers): entered after the platform opens, left before it closes."""
    from ecard.domains import DOMAINS

    return [domain.background for domain in DOMAINS if domain.background is not None]


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
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        route_handlers=[SystemController, MetricsController, *domain_controllers()],
        dependencies=PLATFORM,
        lifespan=[lifespan],
        state=State({}),
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[ProblemResponses()],
        middleware=[EdgeMiddleware()],
        request_max_body_size=settings.max_body_bytes,
        request_class=BodySafeRequest,  # JSON bodies: nesting checked, decoded into their type
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
