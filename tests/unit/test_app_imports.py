"""``ecard.app`` is the composition root: it reads the list of domains and builds the application.
Nothing in a domain package imports it back; what controllers need of the HTTP layer (response
helpers, hot routes) lives in ``ecard.http``, which imports no domain."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ECARD = ROOT / "ecard"

#: What a module of the HTTP layer may import of a domain, and why.
HTTP_DOMAIN_IMPORTS: dict[str, set[str]] = {}  # readiness probes come in through Domain.readiness
#: Modules below a package of ``ecard`` that may import ``ecard.app``, and why.  Each is a
#: command that runs the whole application in its own process, as ``ecard/asgi.py`` does.
ENTRY_POINTS = {
    "ecard/terminal/cli.py": "`ecard terminal simulate` runs the platform in-process",
}


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (functions, ``TYPE_CHECKING``):
    ``import a.b`` gives ``a.b``, ``from a import b`` gives ``a`` and ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_modules() -> list[Path]:
    """Every module inside a package of ``ecard`` (``ecard/<package>/**.py``)."""
    return sorted(p for p in ECARD.glob("*/**/*.py") if p.parent != ECARD)


def test_no_module_of_a_package_imports_the_app() -> None:
    offenders = [
        relative
        for path in _package_modules()
        if "ecard.app" in _imported_modules(path)
        and (relative := str(path.relative_to(ROOT))) not in ENTRY_POINTS
    ]
    assert offenders == [], "import from ecard.http instead of ecard.app"


def test_the_allowed_entry_points_still_exist_and_are_commands() -> None:
    for relative in ENTRY_POINTS:
        path = ROOT / relative
        assert path.is_file(), relative
        assert "ecard.app" in _imported_modules(path), f"{relative}: drop it from ENTRY_POINTS"
        assert path.name == "cli.py", relative


def test_the_http_layer_imports_no_domain_and_not_the_app() -> None:
    """Controllers import the HTTP layer; it imports no domain back (but what it lists above)."""
    # ``ecard/store`` declares a domain for its own upkeep (partition maintenance) but is the
    # storage layer every part uses, the HTTP layer's probes included
    domains = {p.parent.name for p in ECARD.glob("*/domain.py")} - {"store"}
    assert {"codes", "oidc", "registry"} <= domains  # the glob found the domain packages
    for path in sorted((ECARD / "http").glob("*.py")):
        imported = _imported_modules(path)
        assert "ecard.app" not in imported, path.name
        assert "ecard.domains" not in imported, path.name
        of_domains = {m for m in imported if m.split(".")[:2] in (["ecard", d] for d in domains)}
        assert of_domains <= HTTP_DOMAIN_IMPORTS.get(path.name, set()), path.name


def test_importing_the_controllers_does_not_import_the_app() -> None:
    """The import graph, not only the source text: a fresh interpreter imports the controllers
    of the domains that serve HTTP, and ``ecard.app`` is not among the modules loaded."""
    script = (
        "import sys\n"
        "import ecard.codes.controllers, ecard.oidc.controllers, ecard.domain\n"
        "assert 'ecard.app' not in sys.modules, 'ecard.app was imported'\n"
        "assert 'ecard.http.hot_routes' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_app_module_keeps_the_entry_points_names() -> None:
    """``ecard.asgi``, ``ecard terminal simulate`` and the tests build the application with
    ``ecard.app.create_app``; the readers of the domain list stay beside it."""
    from ecard import app
    from ecard.http.application import EcardApp
    from ecard.settings import Settings

    assert isinstance(app.create_app(Settings()), EcardApp)
    assert callable(app.domain_controllers) and callable(app.domain_hot_routes)
