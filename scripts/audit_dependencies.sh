#!/usr/bin/env bash
# Audit the installed dependencies of ecard (the project's virtualenv) for known vulnerabilities
# with pip-audit (PyPA; advisories from the PyPI JSON API / OSV).  Exits non-zero when a
# vulnerability is found or when the advisory service cannot be reached.
#
#   scripts/audit_dependencies.sh            # audit .venv (default) against PyPI's advisories
#   VENV=/path/to/venv scripts/audit_dependencies.sh --vulnerability-service osv
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="$VENV/bin/python"
if ! "$PYTHON" -m pip_audit --version >/dev/null 2>&1; then
  echo "pip-audit is not installed in $VENV: $PYTHON -m pip install 'pip-audit>=2.7,<3'" >&2
  exit 2
fi
# --skip-editable: ecard itself is installed in development mode and is not on PyPI
# --strict: a dependency that could not be audited (advisory service unreachable) is a failure,
# not a silent "No known vulnerabilities found"
exec "$PYTHON" -m pip_audit --strict --progress-spinner off --skip-editable --desc on "$@"
