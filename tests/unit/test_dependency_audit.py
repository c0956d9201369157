"""The CI dependency audit looks at what the service runs with, not at the test tools."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_latest_advisories.py"


def _script():
    spec = importlib.util.spec_from_file_location("audit_latest_advisories", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runtime_closure_holds_the_service_dependencies_and_not_the_test_tools() -> None:
    closure = _script().runtime_closure()
    assert {
        "litestar",
        "msgspec",
        "pyjwt",
        "cryptography",
        "granian",
        "piccolo",
        "web3",
        "argon2-cffi",
    } <= closure
    # extras ecard asks for are followed: redis[hiredis], piccolo[postgres]
    assert {"hiredis", "asyncpg"} <= closure
    assert not {"pytest", "hypothesis", "schemathesis", "playwright", "ecard"} & closure


def test_the_documented_audit_commands_exist() -> None:
    """docs/SECURITY.md and the README show both audit commands: each answers --help."""
    import subprocess
    import sys

    root = SCRIPT.parents[1]
    latest = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert latest.returncode == 0 and "--runtime" in latest.stdout
    pip_audit = subprocess.run(
        [str(root / "scripts" / "audit_dependencies.sh"), "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "VENV": sys.prefix},
        cwd=root,
    )
    assert pip_audit.returncode == 0 and "vulnerability-service" in pip_audit.stdout, (
        pip_audit.stderr
    )
