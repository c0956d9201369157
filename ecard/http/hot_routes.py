"""Hot routes: the few requests every holder and verifier make all day, which
:class:`ecard.http.application.EcardApp` answers ahead of Litestar's routing.  A domain declares
them (``Domain.hot_routes``: (method, path) -> :class:`HotRoute`); their handlers return a
:class:`JsonReply`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

import msgspec
from litestar.types import Receive, Scope, Send


class JsonReply:
    """A JSON response already encoded: the hot handlers (a code, a verification) return it
    instead of a ``Response``, whose building costs Litestar more than the handler's own work.
    :class:`ecard.http.application.EcardApp` sends it in RSGI or ASGI, adding ``x-request-id``;
    as a plain ASGI app it answers the same handlers' Litestar routes, which declare its body in
    ``responses=`` for OpenAPI.  ``headers`` come from :func:`ecard.http.responses.json_headers`."""

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
    """A route :class:`ecard.http.application.EcardApp` serves itself: the handler takes the app's
    state, the Authorization header and the request body.  A route that reads no body does not
    wait for one.  A route with ``dpop`` also gets ``dpop=`` the request's
    :class:`ecard.auth.DpopContext` (its method, path and ``DPoP`` headers), for holder tokens
    bound to a device key."""

    handler: Callable[..., Awaitable[JsonReply]]
    reads_body: bool = True
    dpop: bool = False


__all__ = ["HotRoute", "JsonReply"]
