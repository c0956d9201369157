#!/usr/bin/env bash
# Install the chain tools the ledger tests and contract build use, from the npm registry, into
# .tools/ (nothing global): anvil (a local EVM JSON-RPC node) and solc (the Solidity compiler).
# Idempotent: quick when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ANVIL_VERSION=1.7.1
SOLC_VERSION=0.8.30
TOOLS=.tools/chain

installed() {  # package version -> true when node_modules already holds that version
  local manifest="$TOOLS/node_modules/$1/package.json"
  [ -f "$manifest" ] && grep -q "\"version\": \"$2\"" "$manifest"
}

if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "npm is needed to install anvil and solc" >&2
    exit 1
  fi
fi

if installed @foundry-rs/anvil "$ANVIL_VERSION" && installed solc "$SOLC_VERSION" \
  && "$TOOLS/node_modules/.bin/anvil" --version >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$TOOLS"
[ -f "$TOOLS/package.json" ] || echo '{"private": true}' > "$TOOLS/package.json"
npm install --prefix "$TOOLS" --no-audit --no-fund --silent \
  "@foundry-rs/anvil@$ANVIL_VERSION" "solc@$SOLC_VERSION"
"$TOOLS/node_modules/.bin/anvil" --version
