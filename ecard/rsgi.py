"""granian's native interface (RSGI) for an ASGI application.

``ecard serve`` runs granian with RSGI: under ASGI every request is a scope dict, a ``receive``
coroutine and two ``send`` awaits, each of them a hop between granian's Rust threads and the
event loop; RSGI hands over the request head and takes a whole response in one call, so
:class:`ecard.http.application.EcardApp` answers the routes every holder and verifier call all
day in RSGI itself (what that saves is measured by ``scripts/bench/bench_codes_http.py``).
Litestar speaks ASGI only: every other request goes through :func:`call_asgi`, which presents
the RSGI request as an ASGI one, and :class:`Lifespan` runs the application's ASGI lifespan from
RSGI's worker hooks.

What RSGI cannot carry: header values that are not visible ASCII (granian drops them before the
application sees the request) and the path as the client spelled it (``raw_path`` is rebuilt
from the decoded path).  Neither is used by this service; websockets are not served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import quote

from litestar.types import ASGIApp, Message, Receive, Scope

log = logging.getLogger("ecard.rsgi")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}


class RsgiScope(Protocol):
    """What granian's RSGI scope offers (``granian.rsgi.Scope``)."""

    proto: str
    http_version: str
    server: str
    client: str
    scheme: str
    method: str
    path: str
    query_string: str

    @property
    def headers(self) -> Any: ...


def _address(text: str) -> tuple[str, int] | None:
    """``host:port`` (IPv6 hosts in brackets) as ASGI's (host, port); None for a Unix socket."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def asgi_scope(scope: RsgiScope, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ASGI HTTP scope of an RSGI request."""
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": scope.path,
        "raw_path": quote(scope.path).encode("ascii"),
        "root_path": "",
        "query_string": scope.query_string.encode("latin-1", "replace"),
        "headers": [
            (name.encode("latin-1", "replace"), value.encode("latin-1", "replace"))
            for name, value in scope.headers.items()
        ],
        "client": _address(scope.client),
        "server": _address(scope.server),
        "state": {} if state is None else state,
    }


def asgi_receive(protocol: Any) -> Receive:
    """ASGI ``receive`` over an RSGI request: the body as it arrives, in chunks (the application
    enforces its size limit while reading, as under ASGI), then ``http.disconnect`` once the
    client has gone.  The body is opened on the first call: granian lets it be opened once."""
    chunks: Any = None
    body_done = False

    async def receive() -> Message:
        nonlocal body_done, chunks
        if not body_done:
            try:
                if chunks is None:
                    chunks = protocol.__aiter__()
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            except Exception:  # noqa: BLE001 - granian raises when the client went away mid-body
                body_done = True
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": bytes(chunk), "more_body": True}
        await protocol.client_disconnect()
        return {"type": "http.disconnect"}

    return receive


class AsgiSend:
    """ASGI ``send`` over an RSGI response: a body sent in one message goes out in one call, a
    body in several messages as a stream."""

    __slots__ = ("_protocol", "_start", "_stream", "status")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._start: Message | None = None
        self._stream: Any = None
        self.status: int | None = None  # set once the response has started

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._start = message
            return
        if kind != "http.response.body" or self._start is None:
            return  # extensions this bridge does not offer (it advertises none)
        body = message.get("body", b"")
        if self._stream is None:
            self.status = self._start["status"]
            headers = [
                (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                for name, value in self._start.get("headers", ())
            ]
            if not message.get("more_body"):
                self._protocol.response_bytes(self.status, headers, bytes(body))
                return
            self._stream = self._protocol.response_stream(self.status, headers)
        if body:
            await self._stream.send_bytes(bytes(body))


async def call_asgi(app: ASGIApp, scope: RsgiScope, protocol: Any) -> None:
    """Serve one RSGI request with an ASGI application."""
    send = AsgiSend(protocol)
    try:
        await app(asgi_scope(scope), asgi_receive(protocol), send)  # type: ignore[arg-type]
    except Exception:
        log.exception("unhandled error in the application")
    if send.status is None:  # it raised, or returned without answering
        protocol.response_bytes(500, [("content-type", "text/plain")], b"Internal Server Error")


class Lifespan:
    """An ASGI application's lifespan (startup, shutdown) run from granian's RSGI worker hooks,
    which are plain functions called with the worker's event loop before it serves and after."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()

    def startup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the startup; raise if the application reports it failed."""
        started: asyncio.Future[None] = loop.create_future()

        async def receive() -> Message:
            return await self._inbox.get()

        async def send(message: Message) -> None:
            if started.done():
                return
            if message["type"] == "lifespan.startup.complete":
                started.set_result(None)
            elif message["type"] == "lifespan.startup.failed":
                started.set_exception(RuntimeError(f"startup failed: {message.get('message', '')}"))

        def ended(task: asyncio.Task[None]) -> None:
            if not started.done():
                error = task.exception() if not task.cancelled() else None
                started.set_exception(
                    error or RuntimeError("the lifespan ended before startup completed")
                )

        scope: Scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": {}}  # type: ignore[typeddict-item]
        self._inbox.put_nowait({"type": "lifespan.startup"})
        self._task = loop.create_task(self._app(scope, receive, send))  # type: ignore[arg-type]
        self._task.add_done_callback(ended)
        loop.run_until_complete(started)

    def shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None or self._task.done():
            return
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        loop.run_until_complete(self._task)


__all__ = ["AsgiSend", "Lifespan", "asgi_receive", "asgi_scope", "call_asgi"]
