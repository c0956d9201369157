"""``create_app(settings)``: the application, put together from the shared HTTP layer
(:mod:`ecard.http`) and every domain's contributions (``ecard.domains.DOMAINS``).

This module is the composition root: it reads the list of domains, and nothing a domain imports
imports it (``tests/unit/test_app_imports.py``).  What the application is made of lives in
:mod:`ecard.http` (``EcardApp``, hot routes, response helpers, the system endpoints, OpenAPI,
the lifespan), :mod:`ecard.edge` (the middleware) and :mod:`ecard.errors` (the handlers).
"""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler

from ecard.bodies import BodySafeRequest
from ecard.dependencies import PLATFORM
from ecard.edge import EdgeMiddleware
from ecard.errors import EXCEPTION_HANDLERS
from ecard.http.application import EcardApp
from ecard.http.hot_routes import HotRoute
from ecard.http.lifespan import BackgroundTask, platform_lifespan
from ecard.http.openapi import ProblemResponses, openapi_config
from ecard.http.system import READINESS_PROBES, MetricsController, ReadinessProbe, SystemController
from ecard.logs import configure_logging
from ecard.platform import Platform
from ecard.proxy import parse_trusted_proxies
from ecard.settings import Settings


def domain_controllers() -> list[ControllerRouterHandler]:
    """Every domain's controllers, in the order of ``ecard.domains.DOMAINS``."""
    # imported here, not above: a domain's command module (``ecard terminal simulate``) builds the
    # whole application, so importing this module must not import the domains
    from ecard.domains import DOMAINS

    return [c for domain in DOMAINS for c in domain.controllers]


def domain_hot_routes() -> dict[tuple[str, str], HotRoute]:
    """Every domain's ``hot_routes``: (method, path) -> handler, served by :class:`EcardApp`."""
    from ecard.domains import DOMAINS

    return {route: handler for domain in DOMAINS for route, handler in domain.hot_routes.items()}


def domain_background_tasks() -> list[BackgroundTask]:
    """Every domain's optional ``background(platform)`` async context manager (sealers, relays,
    workers): entered after the platform opens, left before it closes."""
    from ecard.domains import DOMAINS

    return [domain.background for domain in DOMAINS if domain.background is not None]


def domain_readiness_probes() -> dict[str, ReadinessProbe]:
    """Every domain's named ``readiness`` probes, reported by ``/readyz``."""
    from ecard.domains import DOMAINS

    return {name: probe for domain in DOMAINS for name, probe in domain.readiness.items()}


def create_app(settings: Settings, platform: Platform | None = None) -> Litestar:
    """The application; ``platform`` may be passed in by tests that share one across apps."""
    configure_logging(settings.log_level, json_output=settings.log_json)
    return EcardApp(
        hot_routes=domain_hot_routes(),
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        route_handlers=[SystemController, MetricsController, *domain_controllers()],
        dependencies=PLATFORM,
        lifespan=[platform_lifespan(settings, domain_background_tasks(), platform)],
        state=State({READINESS_PROBES: domain_readiness_probes()}),
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[ProblemResponses()],
        middleware=[EdgeMiddleware()],
        request_max_body_size=settings.max_body_bytes,
        request_class=BodySafeRequest,  # JSON bodies: nesting checked, decoded into their type
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )


__all__ = [
    "EcardApp",
    "MetricsController",
    "SystemController",
    "create_app",
    "domain_background_tasks",
    "domain_controllers",
    "domain_hot_routes",
    "domain_readiness_probes",
]
