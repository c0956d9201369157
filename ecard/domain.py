"""``Domain``: what one part of the service contributes, declared in one typed place.

Each domain package (``ecard/registry``, ``ecard/oidc`` …) has a module ``domain.py`` holding
exactly one ``DOMAIN = Domain(...)``; ``ecard.domains.DOMAINS`` lists them all, in migration
order, and the application (``ecard.app``), the database (``ecard.store.db``, piccolo's
``ecard.piccolo_conf``) and the command line (``ecard.cli``) read only that list.

This module imports nothing of the service at run time (the types below are for checkers only),
so any part may import it without a cycle.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler
    from piccolo.conf.apps import AppConfig
    from piccolo.table import Table

    from ecard.http.hot_routes import HotRoute
    from ecard.platform import Platform


@dataclass(frozen=True)
class Domain:
    """One domain's contributions; every field but ``name`` is optional.

    - ``controllers``: Litestar controllers (and routers) mounted by ``create_app``, in this order.
    - ``hot_routes``: (method, path) -> :class:`ecard.http.hot_routes.HotRoute` that
      ``EcardApp`` serves itself, ahead of Litestar's routing.
    - ``piccolo_app``: the piccolo app (tables and migrations); its position in
      ``ecard.domains.DOMAINS`` is its migration order.
    - ``register_cli``: adds the domain's commands to the ``ecard`` command's subparsers.
    - ``background``: ``background(platform)``, an async context manager entered after the
      platform opens and left before it closes (sealers, relays, workers).
    - ``readiness``: name -> ``probe(platform)``, reported by ``/readyz`` beside the database and
      the store.  A probe answers ``"ok…"`` or ``"unavailable: <why>"``, is bounded in time (a
      few seconds at most) and never raises; the service is ready only when every probe is ok.
    """

    name: str
    controllers: Sequence[ControllerRouterHandler] = ()
    hot_routes: Mapping[tuple[str, str], HotRoute] = field(default_factory=dict)
    piccolo_app: AppConfig | None = None
    register_cli: Callable[[argparse._SubParsersAction], None] | None = None
    background: Callable[[Platform], AbstractAsyncContextManager[None]] | None = None
    readiness: Mapping[str, Callable[[Platform], Awaitable[str]]] = field(default_factory=dict)

    @property
    def tables(self) -> Sequence[type[Table]]:
        """The tables of the domain's piccolo app (none without one)."""
        return tuple(self.piccolo_app.table_classes) if self.piccolo_app is not None else ()

    @property
    def piccolo_app_module(self) -> str | None:
        """The dotted name of the module holding ``piccolo_app`` as ``APP_CONFIG``, for piccolo's
        own ``AppRegistry``, which imports apps by name.  By piccolo's layout that module is
        ``<package>.piccolo_app`` of the package holding the app's migrations folder; the name is
        computed from that folder's path, without importing anything (``tests/unit/
        test_domains.py`` checks that the module named holds this very ``APP_CONFIG``)."""
        if self.piccolo_app is None:
            return None
        package = Path(self.piccolo_app.migrations_folder_path).resolve().parent
        parts: list[str] = []
        while (package / "__init__.py").is_file():
            parts.insert(0, package.name)
            package = package.parent
        return ".".join([*parts, "piccolo_app"])
