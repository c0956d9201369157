"""``EcardApp``: the Litestar application, with the hot routes (:mod:`ecard.http.hot_routes`)
served ahead of its routing, in RSGI (granian, :mod:`ecard.rsgi`) or ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Litestar, Request
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from ecard.auth import DpopContext
from ecard.edge import (
    behind_proxy,
    request_finished,
    request_id_of,
    request_started,
    valid_request_id,
)
from ecard.errors import AppError, exception_response
from ecard.http.hot_routes import HotRoute, JsonReply
from ecard.proxy import TrustedProxies
from ecard.rsgi import AsgiSend, Lifespan, RsgiScope, asgi_receive, asgi_scope, call_asgi


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


__all__ = ["EcardApp"]
