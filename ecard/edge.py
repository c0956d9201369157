"""What every routed request passes through once, in one ASGI wrapper: a request id, one access
log line, Prometheus metrics, the security headers, and the API explorer's Content-Security-Policy.

One wrapper instead of a middleware per concern: each layer wraps ``send`` again, and on this
service's hot paths (codes, verifications) those layers cost more than the work itself
(``scripts/bench/bench_service.py`` measures ``/healthz`` against a bare Litestar route).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
import re
import secrets
import time

from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("ecard.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: Headers every response carries unless the handler set its own (pages set a stricter CSP).
SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}
#: The API explorer (Swagger UI at ``/schema/``) loads its script and style from jsDelivr and starts
#: from one inline script, allowed by its hash (computed per response: it embeds the document).
DOCS_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net {hashes}; "
    "style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data: https:; "
    "font-src https://cdn.jsdelivr.net; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)

# The names and labels of Litestar's Prometheus middleware, which this replaces: dashboards keep working.
_LABELS = ("method", "path", "status_code", "app_name")
REQUESTS = Counter("litestar_requests_total", "Total requests", _LABELS)
ERRORS = Counter("litestar_requests_error_total", "Total errors in requests", _LABELS)
DURATION = Histogram("litestar_request_duration_seconds", "Request duration, in seconds", _LABELS)
IN_PROGRESS = Gauge("litestar_requests_in_progress", "Total requests currently in progress", ("method", "path", "app_name"))
APP_NAME = "ecard"


def new_request_id() -> str:
    """Unique, not secret: a random prefix per process and a counter.  A random id per request
    costs a system call, during which the server's own threads take the GIL from the handler."""
    global _id_prefix, _id_pid
    if _id_pid != os.getpid():  # a forked worker draws its own prefix
        _id_prefix, _id_pid = secrets.token_hex(8), os.getpid()
    return f"{_id_prefix}{next(_id_counter):016x}"


_id_prefix, _id_pid, _id_counter = "", 0, itertools.count()


def with_security_headers(headers: list) -> list:
    present = {bytes(name).lower() for name, _ in headers}
    return headers + [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]


#: The same, for responses built outside the edge: what no route handles (404, 405) gets them from
#: its problem response (a ``before_send`` hook would wrap ``send`` once more on every request).
SECURITY_HEADER_STRINGS = {name.decode(): value.decode() for name, value in SECURITY_HEADERS.items()}


def _docs_policy(body: bytes) -> bytes:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    return DOCS_CSP.format(hashes=hashes).encode()


class _Series:
    """Metric children per (method, route, status), resolved once: ``labels()`` locks and hashes."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, str, int], tuple] = {}
        self._running: dict[tuple[str, str], Gauge] = {}

    def running(self, method: str, route: str) -> Gauge:
        key = (method, route)
        child = self._running.get(key)
        if child is None:
            child = self._running[key] = IN_PROGRESS.labels(method, route, APP_NAME)
        return child

    def done(self, method: str, route: str, status: int) -> tuple:
        key = (method, route, status)
        children = self._done.get(key)
        if children is None:
            labels = (method, route, str(status), APP_NAME)
            children = self._done[key] = (
                REQUESTS.labels(*labels), DURATION.labels(*labels), ERRORS.labels(*labels) if status >= 500 else None
            )
        return children


class EdgeMiddleware:
    """Litestar middleware factory (``middleware=[EdgeMiddleware()]``); runs after routing, so
    the route template (never the raw path, which may carry ids) labels logs and metrics."""

    def __init__(self) -> None:
        self._series = _Series()

    def __call__(self, app: ASGIApp) -> ASGIApp:
        series = self._series

        async def edge(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            request_id = ""
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    request_id = value.decode("latin-1")
                    break
            if not _REQUEST_ID.match(request_id):
                request_id = new_request_id()
            scope.setdefault("state", {})["request_id"] = request_id
            method, route = scope["method"], scope.get("path_template") or "-"
            docs = route.startswith("/schema")
            started = time.perf_counter()
            status = 500
            held: dict | None = None  # an API explorer page, until its body gives the CSP hashes
            chunks: list[bytes] = []

            async def send_at_edge(message: dict) -> None:
                nonlocal status, held
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = with_security_headers(list(message.get("headers") or []))
                    headers.append((b"x-request-id", request_id.encode()))
                    message = {**message, "headers": headers}
                    if docs and _is_html_without_csp(headers):
                        held = message
                        return
                elif held is not None and message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))
                    if message.get("more_body"):
                        return
                    body = b"".join(chunks)
                    headers = [*held["headers"], (b"content-security-policy", _docs_policy(body))]
                    await send({**held, "headers": headers})
                    held = None
                    message = {"type": "http.response.body", "body": body}
                await send(message)

            running = series.running(method, route)
            running.inc()
            try:
                await app(scope, receive, send_at_edge)
            finally:
                running.dec()
                elapsed = time.perf_counter() - started
                count, duration, errors = series.done(method, route, status)
                count.inc()
                duration.observe(elapsed)
                if errors is not None:
                    errors.inc()
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        "request",
                        extra={
                            "request_id": request_id,
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                        },
                    )

        return edge


def _is_html_without_csp(headers: list) -> bool:
    names = {bytes(name).lower(): value for name, value in headers}
    return bytes(names.get(b"content-type", b"")).startswith(b"text/html") and b"content-security-policy" not in names
