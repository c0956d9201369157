"""The runtime dependencies in ``pyproject.toml`` are exactly the distributions the runtime code
(``ecard/``, ``ledger/``) imports: nothing imported is left to arrive transitively, and nothing
only tests or benchmarks use is installed on a production host."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("ecard", "ledger")

#: declared runtime dependencies that no runtime module imports by name, and why they are needed
#: (none today: granian is imported by ``ecard serve``; extras such as ``litestar[standard]``,
#: ``redis[hiredis]`` and ``piccolo[postgres,sqlite]`` ride on distributions that are imported)
DECLARED_BUT_NOT_IMPORTED: dict[str, str] = {}


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unparsable requirement {requirement!r}"
    return _normalise(match.group(1))


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _top_level_imports(path: Path) -> set[str]:
    """Top-level module names of every absolute import in ``path`` (nested and lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _runtime_imports() -> dict[str, set[str]]:
    """Third-party top-level import name → the runtime files importing it."""
    found: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _top_level_imports(path):
                if name in sys.stdlib_module_names or name in RUNTIME_PACKAGES:
                    continue
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution (normalised) → the runtime files importing it."""
    providers = importlib.metadata.packages_distributions()
    imports = _runtime_imports()
    unknown = {name: sorted(files) for name, files in imports.items() if name not in providers}
    assert not unknown, f"imports no installed distribution provides: {unknown}"
    by_distribution: dict[str, set[str]] = {}
    for name, files in imports.items():
        for distribution in providers[name]:
            by_distribution.setdefault(_normalise(distribution), set()).update(files)
    return by_distribution


def test_runtime_code_imports_exactly_the_declared_runtime_dependencies() -> None:
    declared = {_requirement_name(r) for r in _project()["dependencies"]}
    imported = _imported_distributions()
    undeclared = {name: sorted(files) for name, files in imported.items() if name not in declared}
    unused = declared - set(imported) - set(DECLARED_BUT_NOT_IMPORTED)
    assert not undeclared, (
        f"imported by runtime code but not in [project].dependencies: {undeclared}"
    )
    assert not unused, (
        f"in [project].dependencies but imported by no runtime module: {sorted(unused)}"
    )


def test_the_allowance_for_indirect_dependencies_names_declared_ones() -> None:
    declared = {_requirement_name(r) for r in _project()["dependencies"]}
    assert set(DECLARED_BUT_NOT_IMPORTED) <= declared


def test_test_and_benchmark_only_packages_are_not_runtime_dependencies() -> None:
    declared = {_requirement_name(r) for r in _project()["dependencies"]}
    for package in ("qrcode", "segno", "base45", "cbor2", "pytest", "hypothesis"):
        assert package not in declared, f"{package} is for tests or benchmarks, not runtime"
    extras = _project()["optional-dependencies"]
    test_extra = {_requirement_name(r) for r in extras["test"]}
    bench_extra = {_requirement_name(r) for r in extras["bench"]}
    assert "base45" in test_extra  # tests decode code texts independently of ecard
    assert {"qrcode", "segno", "cbor2"} <= bench_extra  # bench_code_format's comparisons


def test_the_import_scan_sees_lazy_imports(tmp_path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text(
        "import os\nfrom . import sibling\n\ndef f():\n    import granian.server\n    from "
        "PIL import Image\n"
    )
    assert _top_level_imports(module) == {"os", "granian", "PIL"}
