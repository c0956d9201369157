#!/usr/bin/env bash
# Run the whole test suite.  Needs only Python 3.11+ and pip; tests whose real component is missing
# (PostgreSQL, Redis, an EVM node, Chromium, pcscd) skip with a reason, or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools  # the venv's own setuptools is old (public advisories)
.venv/bin/python -m pip install --quiet -e '.[test,bench]'
# test files run in parallel processes (a file's tests stay together: they share its fixtures, and
# the PC/SC tests share the one pcscd); ECARD_TEST_WORKERS=0 runs everything in this process
WORKERS=${ECARD_TEST_WORKERS:-$(n=$(nproc 2>/dev/null || echo 2); echo $((n < 4 ? n : 4)))}
exec .venv/bin/python -m pytest -n "$WORKERS" --dist loadfile "$@"
