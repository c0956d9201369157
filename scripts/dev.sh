#!/usr/bin/env bash
# Start ecard on its embedded defaults (SQLite under var/, in-process store, local ledger, dev keys
# in keys/) with demo actors written to demo.json.  Needs only Python 3.11+ and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools  # the venv's own setuptools is old (public advisories)
.venv/bin/python -m pip install --quiet -e .
.venv/bin/ecard demo init --out demo.json
# ECARD_PUBLIC_URL unset: the service advertises (OIDC issuer, audiences) the address it serves,
# so `scripts/dev.sh --port 9000` advertises http://127.0.0.1:9000; set it behind a proxy
exec .venv/bin/ecard serve "$@"
