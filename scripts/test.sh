#!/usr/bin/env bash
# Run the whole test suite.  Needs only Python 3.11+ and pip; tests whose real component is missing
# (PostgreSQL, Redis, an EVM node, Chromium, pcscd) skip with a reason, or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
exec .venv/bin/python -m pytest "$@"
