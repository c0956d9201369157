"""The platform's own endpoints, beside the domains': liveness (``/healthz``), readiness
(``/readyz``: database, ephemeral store and each domain's declared probes, e.g. the ledger), the
public keys (``/.well-known/jwks.json``), the error catalogue (``/problems``) and Prometheus
metrics (``/metrics``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.plugins.prometheus import PrometheusController

from ecard import __version__
from ecard.errors import CATALOGUE
from ecard.http.responses import etagged
from ecard.platform import Platform
from ecard.store import db

#: the app state key holding name -> probe, filled by ``create_app`` from ``Domain.readiness``
READINESS_PROBES = "readiness_probes"
ReadinessProbe = Callable[[Platform], Awaitable[str]]


class JWKS(msgspec.Struct):
    keys: list[dict[str, str]]


class Health(msgspec.Struct):
    status: str
    version: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


class SystemController(Controller):
    tags = ["system"]  # noqa: RUF012 - as Litestar's Controller declares it

    @get("/healthz", summary="Process is up")
    async def healthz(self) -> Health:
        return Health(status="ok", version=__version__)

    @get("/readyz", summary="Database, ephemeral store and ledger reachable")
    async def readyz(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response[Readiness]:
        checks: dict[str, str] = {}
        for name, probe in (
            ("database", db.ping(platform.engine)),
            ("store", platform.store.ping()),
        ):
            try:
                await probe
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - a readiness probe reports, it does not raise
                checks[name] = f"unavailable: {type(exc).__name__}"
        probes: dict[str, ReadinessProbe] = request.app.state.get(READINESS_PROBES, {})
        for name, domain_probe in probes.items():  # each bounded in time and never raising
            checks[name] = await domain_probe(platform)
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


class MetricsController(PrometheusController):
    path = "/metrics"

    @get(media_type="text/plain", summary="Prometheus metrics (text exposition format)")
    async def get(self) -> Response:
        return await PrometheusController.get.fn(self)


__all__ = ["MetricsController", "SystemController"]
