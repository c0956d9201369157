"""What every routed request passes through once, in one ASGI wrapper: a request id, one access
log line, Prometheus metrics, the security headers, and the API explorer's Content-Security-Policy.

One wrapper instead of a middleware per concern: each layer wraps ``send`` again, and on this
service's hot paths (codes, verifications) those layers cost more than the work itself
(``scripts/bench/bench_service.py`` measures ``/healthz`` against a bare Litestar route).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import logging
import os
import re
import secrets
import time

from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import REGISTRY, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ecard.proxy import TrustedProxies, forwarded, split_host

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
_INLINE_SCRIPT = re.compile(
    rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE
)

# The names and labels of Litestar's Prometheus middleware, which this replaces: dashboards keep
# working.
_LABELS = ("method", "path", "status_code", "app_name")
_BUCKETS = Histogram.DEFAULT_BUCKETS  # upper bounds, the last one +Inf
APP_NAME = "ecard"


def with_security_headers(headers: list) -> list:
    present = {bytes(name).lower() for name, _ in headers}
    return headers + [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]


#: The same, for responses built outside the edge: what no route handles (404, 405) gets them from
#: its problem response (a ``before_send`` hook would wrap ``send`` once more on every request).
SECURITY_HEADER_STRINGS = {
    name.decode(): value.decode() for name, value in SECURITY_HEADERS.items()
}
SECURITY_HEADER_PAIRS = list(SECURITY_HEADER_STRINGS.items())


def _docs_policy(body: bytes) -> bytes:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    return DOCS_CSP.format(hashes=hashes).encode()


class _Done:
    __slots__ = ("buckets", "count", "errors", "seconds")

    def __init__(self) -> None:
        self.count = self.errors = 0
        self.seconds = 0.0
        self.buckets = [0] * len(_BUCKETS)


class _Series:
    """Requests in flight, done, failed and their durations, per (method, route, status), as plain
    numbers written by the worker's event loop and read when ``/metrics`` is scraped.  Metric
    objects of ``prometheus_client`` take a lock per update: four per request cost the hot
    routes about a seventh of their throughput under load (``bench_codes_http``)."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], int] = {}
        self.done: dict[tuple[str, str, int], _Done] = {}

    def start(self, method: str, route: str) -> None:
        key = (method, route)
        self.running[key] = self.running.get(key, 0) + 1

    def finish(self, method: str, route: str, status: int, seconds: float) -> None:
        self.running[method, route] -= 1
        done = self.done.get((method, route, status))
        if done is None:
            done = self.done[method, route, status] = _Done()
        done.count += 1
        done.errors += status >= 500
        done.seconds += seconds
        done.buckets[bisect.bisect_left(_BUCKETS, seconds)] += 1


class _SeriesCollector(Collector):
    def __init__(self, series: _Series) -> None:
        self._series = series

    def collect(self) -> list:
        requests = CounterMetricFamily("litestar_requests", "Total requests", labels=_LABELS)
        errors = CounterMetricFamily(
            "litestar_requests_error", "Total errors in requests", labels=_LABELS
        )
        duration = HistogramMetricFamily(
            "litestar_request_duration_seconds", "Request duration, in seconds", labels=_LABELS
        )
        running = GaugeMetricFamily(
            "litestar_requests_in_progress",
            "Total requests currently in progress",
            labels=("method", "path", "app_name"),
        )
        for (method, route, status), done in list(self._series.done.items()):
            labels = [method, route, str(status), APP_NAME]
            requests.add_metric(labels, done.count)
            if done.errors:
                errors.add_metric(labels, done.errors)
            cumulative = itertools.accumulate(done.buckets)
            duration.add_metric(
                labels,
                [(floatToGoString(b), c) for b, c in zip(_BUCKETS, cumulative, strict=True)],
                done.seconds,
            )
        for (method, route), count in list(self._series.running.items()):
            running.add_metric([method, route, APP_NAME], count)
        return [requests, errors, duration, running]


#: one per process, like the metric objects it replaces: every app of the process counts here
SERIES = _Series()
REGISTRY.register(_SeriesCollector(SERIES))


class EdgeMiddleware:
    """Litestar middleware factory (``middleware=[EdgeMiddleware()]``); runs after routing, so
    the route template (never the raw path, which may carry ids) labels logs and metrics.  Routes
    served before Litestar's routing (:class:`ecard.http.application.EcardApp`) call
    :func:`request_started` and :func:`request_finished` themselves."""

    def __call__(self, app: ASGIApp) -> ASGIApp:
        async def edge(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            request_id = request_id_of(scope)
            method, route = scope["method"], scope.get("path_template") or "-"
            docs = route.startswith("/schema")
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

            started = request_started(method, route)
            try:
                await app(scope, receive, send_at_edge)
            finally:
                request_finished(request_id, method, route, status, started)

        return edge


def request_started(method: str, route: str) -> float:
    """Count a request in flight; the returned start time goes to :func:`request_finished`.  For
    handlers that add the security headers and ``x-request-id`` themselves (the hot routes): the
    same metrics and log line as :class:`EdgeMiddleware`, without wrapping ``send`` (a wrapper per
    request cost the code endpoints about a tenth of their throughput)."""
    SERIES.start(method, route)
    return time.perf_counter()


#: New request ids: a random prefix per process (renewed in a forked worker) and a counter.  They
#: only have to be unique; one random id per request cost a getrandom(2) call, which releases the
#: GIL to granian's threads in the middle of every request.
_request_id_prefix = secrets.token_hex(8)
_request_counter = itertools.count()


def _renew_request_id_prefix() -> None:
    global _request_id_prefix  # one per process, renewed after fork
    _request_id_prefix = secrets.token_hex(8)


os.register_at_fork(after_in_child=_renew_request_id_prefix)


def valid_request_id(header: str | None) -> str:
    """The caller's ``x-request-id`` when it is a sane token, else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return f"{_request_id_prefix}{next(_request_counter):016x}"


def request_id_of(scope: Scope) -> str:
    """:func:`valid_request_id` of an ASGI request, kept in its scope's state for problem
    responses and logs."""
    header = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            header = value.decode("latin-1")
            break
    request_id = valid_request_id(header)
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


def behind_proxy(scope: Scope, trusted: TrustedProxies) -> None:
    """Make an HTTP scope's ``client``, ``scheme``, ``server`` and ``Host`` header the ones the
    client used, when its immediate peer is a trusted proxy (``ECARD_TRUSTED_PROXIES``) that says
    so in ``Forwarded`` or ``X-Forwarded-*`` (:func:`ecard.proxy.forwarded`); from anyone else
    those headers change nothing.  The peer's own address is kept in the scope's state as
    ``proxy_peer``.  Called once per request, before anything reads the scope."""
    if not trusted:
        return
    peer = scope.get("client")
    said = forwarded(peer[0] if peer else None, scope["headers"], trusted)
    if said is None:
        return
    scope.setdefault("state", {})["proxy_peer"] = peer
    if said.client is not None:
        scope["client"] = said.client
    if said.scheme is not None:
        scope["scheme"] = said.scheme
    host = split_host(said.host) if said.host is not None else None
    if host is not None and said.host is not None:
        name, port = host
        scope["server"] = (name, port or (443 if scope.get("scheme") == "https" else 80))
        value = said.host.encode("latin-1")
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"host"] + [
            (b"host", value)
        ]


def request_finished(request_id: str, method: str, route: str, status: int, started: float) -> None:
    """Record a request's metrics and its access log line."""
    elapsed = time.perf_counter() - started
    SERIES.finish(method, route, status, elapsed)
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


def _is_html_without_csp(headers: list) -> bool:
    names = {bytes(name).lower(): value for name, value in headers}
    return (
        bytes(names.get(b"content-type", b"")).startswith(b"text/html")
        and b"content-security-policy" not in names
    )
