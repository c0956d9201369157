"""The service is the sum of its domains, and ``ecard.domains.DOMAINS`` is where they are listed.

Each domain declares what it contributes (controllers, hot routes, piccolo app, commands,
background task) in one ``DOMAIN = Domain(...)``; the application, the database, piccolo's
configuration and the command line read that list, and look nothing up by module name."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar import Router
from litestar.handlers import BaseRouteHandler
from piccolo.table import Table

from ecard.domain import Domain
from ecard.domains import DOMAINS

ROOT = Path(__file__).resolve().parents[2]
ECARD = ROOT / "ecard"
#: the modules that read the list; everything else is a domain (or below one)
READERS = (
    "ecard/domains.py",
    "ecard/app.py",
    "ecard/cli.py",
    "ecard/store/db.py",
    "ecard/piccolo_conf.py",
)


def _declaring_modules() -> list[str]:
    """Every module on disk that declares a ``DOMAIN``: ``ecard/<package>/domain.py`` and ecard's
    declaration of the (independent) ledger."""
    packages = sorted(p.parent.name for p in ECARD.glob("*/domain.py"))
    return [f"ecard.{name}.domain" for name in packages] + ["ecard.ledger_domain"]


def test_every_domain_is_listed_once() -> None:
    assert all(isinstance(domain, Domain) for domain in DOMAINS)
    names = [domain.name for domain in DOMAINS]
    assert len(names) == len(set(names)), names
    declared = [importlib.import_module(module).DOMAIN for module in _declaring_modules()]
    assert sorted(d.name for d in declared) == sorted(names)
    assert all(any(d is listed for listed in DOMAINS) for d in declared)


def test_the_ledger_is_migrated_right_after_the_registry() -> None:
    """Migration order is list order; the ledger's tables come before the consent that
    writes them."""
    names = [d.name for d in DOMAINS if d.piccolo_app is not None]
    assert names[:2] == ["registry", "ledger"]
    assert names.index("ledger") < names.index("consent")


def _handler_functions(controller: object) -> set[Callable[..., object]]:
    def plain(fn: Callable[..., object]) -> Callable[..., object]:
        return getattr(fn, "__func__", fn)

    if isinstance(controller, Router):
        handlers = [h for route in controller.routes for h in route.route_handlers]
    else:
        handlers = [
            v
            for name in dir(controller)
            if isinstance(v := getattr(controller, name, None), BaseRouteHandler)
        ]
    return {plain(h.fn) for h in handlers if "create_options_handler" not in h.fn.__qualname__}


def test_every_controller_of_the_app_comes_from_a_domain() -> None:
    from ecard.app import MetricsController, SystemController, create_app, domain_controllers
    from ecard.settings import Settings

    assert domain_controllers() == [c for d in DOMAINS for c in d.controllers]
    declared = set().union(*(_handler_functions(c) for d in DOMAINS for c in d.controllers))
    own = _handler_functions(SystemController) | _handler_functions(MetricsController)
    app = create_app(Settings())
    mounted = {
        getattr(h.fn, "__func__", h.fn)
        for route in app.routes
        for h in route.route_handlers
        if "create_options_handler" not in h.fn.__qualname__
    }
    strays = {
        f for f in mounted - declared - own if not f.__module__.startswith("litestar.")
    }  # OpenAPI's pages
    assert not strays, strays
    assert declared <= mounted


def test_every_controllers_module_is_declared_by_its_domain() -> None:
    """A ``CONTROLLERS`` list no domain declares would never be mounted."""
    declared = {id(c) for d in DOMAINS for c in d.controllers}
    for path in sorted(ECARD.glob("*/*controllers.py")):
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for controller in getattr(module, "CONTROLLERS", []):
            assert id(controller) in declared, f"{module.__name__}: {controller!r}"


def test_hot_routes_and_background_tasks_come_from_the_domains() -> None:
    from ecard.app import domain_background_tasks, domain_hot_routes

    assert set(domain_hot_routes()) == {
        ("POST", "/holder/v1/codes"),
        ("POST", "/verifier/v1/verifications"),
    }
    assert domain_background_tasks() == [d.background for d in DOMAINS if d.background is not None]
    assert {d.name for d in DOMAINS if d.background is not None} == {
        "registry",
        "consent",
        "webhooks",
        "directory",
        "statistics",
        "partitions",  # ecard/store/domain.py: partition maintenance
    }


def test_readyz_reports_every_probe_a_domain_declares() -> None:
    from ecard.app import domain_readiness_probes

    assert domain_readiness_probes() == {
        name: probe for d in DOMAINS for name, probe in d.readiness.items()
    }
    assert set(domain_readiness_probes()) == {"ledger"}


def test_each_piccolo_app_holds_exactly_its_domains_tables() -> None:
    seen: dict[type[Table], str] = {}
    for domain in DOMAINS:
        if domain.piccolo_app is None:
            assert domain.tables == ()
            continue
        package = domain.piccolo_app_module.rpartition(".")[0]  # type: ignore[union-attr]
        tables = importlib.import_module(f"{package}.tables").TABLES
        assert list(domain.tables) == list(tables), domain.name
        for table in domain.tables:
            assert table not in seen, f"{table.__name__} in {seen.get(table)} and {domain.name}"
            seen[table] = domain.name
            assert table.__module__.startswith(package + "."), (domain.name, table)


def _subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *_subclasses(direct)}}


def test_every_table_of_the_service_belongs_to_a_domain() -> None:
    for path in [*ECARD.glob("*/tables.py"), ROOT / "ledger" / "tables.py"]:
        importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    # a migration module declares the tables it refers to as they were then: not the service's
    ours = {
        t
        for t in _subclasses(Table)
        if t.__module__.startswith(("ecard.", "ledger."))
        and ".piccolo_migrations." not in t.__module__
        and getattr(sys.modules.get(t.__module__), t.__name__, None) is t
    }
    declared = {t for d in DOMAINS for t in d.tables}
    assert ours - declared == set()


def test_piccolo_conf_registers_the_same_apps_in_the_same_order() -> None:
    """piccolo's own command line imports apps by module name; those names are derived from
    the list, and each names the module holding that very ``APP_CONFIG``."""
    from ecard import piccolo_conf
    from ecard.store import db

    with_apps = [d for d in DOMAINS if d.piccolo_app is not None]
    assert piccolo_conf.APP_REGISTRY.apps == [d.piccolo_app_module for d in with_apps]
    for domain in with_apps:
        assert importlib.import_module(domain.piccolo_app_module).APP_CONFIG is domain.piccolo_app  # type: ignore[arg-type]
    assert list(piccolo_conf.APP_REGISTRY.app_configs.values()) == [
        d.piccolo_app for d in with_apps
    ]
    assert db.app_configs() == [d.piccolo_app for d in with_apps]
    assert db.all_tables() == [t for d in with_apps for t in d.tables]


def test_every_domains_commands_are_in_the_ecard_command() -> None:
    from ecard.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for domain in DOMAINS:
        if domain.register_cli is None:
            continue
        alone = argparse.ArgumentParser().add_subparsers()
        domain.register_cli(alone)
        assert alone.choices, domain.name
        assert set(alone.choices) <= set(commands), domain.name


def _source(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "relative", ["ecard/app.py", "ecard/cli.py", "ecard/store/db.py", "ecard/piccolo_conf.py"]
)
def test_readers_look_nothing_up_by_module_name(relative: str) -> None:
    source = _source(relative)
    calls = re.findall(r"import_module\(([^)]*)\)", source)
    assert all(arg == "PICCOLO_CONF" for arg in calls), (
        calls
    )  # the piccolo configuration, not a domain
    assert "__import__(" not in source
    assert not re.search(
        r"""["'](ecard|ledger)(\.\w+)*\.(controllers|stock_controllers|cli|piccolo_app)["']""",
        source,
    )
    assert not re.search(
        r"getattr\([^)]*[\"'](CONTROLLERS|HOT_ROUTES|background|register|APP_CONFIG)[\"']", source
    )


def test_no_domain_imports_the_list_of_domains() -> None:
    """``ecard.domains`` imports every domain; a domain importing it back would be a cycle."""
    pattern = re.compile(
        r"^\s*(from ecard\.domains import|import ecard\.domains|from ecard import domains)",
        re.MULTILINE,
    )
    readers = {ROOT / r for r in READERS}
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*ECARD.rglob("*.py"), *(ROOT / "ledger").rglob("*.py")]
        if path not in readers and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_ledger_stays_independent_of_ecard() -> None:
    pattern = re.compile(r"^\s*(from|import) ecard\b", re.MULTILINE)
    assert [
        p.name
        for p in (ROOT / "ledger").rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ] == []


@pytest.mark.parametrize(
    "module",
    ["ecard.app", "ecard.domains", "ecard.piccolo_conf", "ecard.cli", "ecard.codes.domain"],
)
def test_each_entry_point_imports_first_without_a_cycle(module: str) -> None:
    """Whichever module a process imports first (the server, piccolo's CLI, ``ecard``), the
    import graph resolves."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {module}; from ecard.domains import DOMAINS; assert DOMAINS",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_domain_command_module_is_declared() -> None:
    """A ``register(subparsers)`` no domain declares would never be added to ``ecard``."""
    declared = {d.register_cli for d in DOMAINS if d.register_cli is not None}
    for path in sorted(ECARD.glob("*/cli.py")):
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if hasattr(module, "register"):
            assert module.register in declared, module.__name__
