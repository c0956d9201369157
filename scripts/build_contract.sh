#!/usr/bin/env bash
# Rebuild ledger/evm/LedgerAnchor.json (ABI + bytecode) from ledger/evm/LedgerAnchor.sol with the
# pinned solc from the npm registry (installed into .tools/ by scripts/install_chain_tools.sh).
# Usage: scripts/build_contract.sh [OUTPUT]   (default: the committed artifact)
# EVM version "paris" (no PUSH0) so the same bytecode deploys on Besu, GoQuorum and anvil.
set -euo pipefail
OUTPUT=$(realpath -m "${1:-$(dirname "$0")/../ledger/evm/LedgerAnchor.json}")
cd "$(dirname "$0")/.."
scripts/install_chain_tools.sh >/dev/null
NODE_PATH=.tools/chain/node_modules node - ledger/evm/LedgerAnchor.sol "$OUTPUT" <<'JS'
const fs = require("fs");
const path = require("path");
const solc = require("solc");
const [source, target] = process.argv.slice(2);
const name = path.basename(source, ".sol");
const input = {
  language: "Solidity",
  sources: { [path.basename(source)]: { content: fs.readFileSync(source, "utf8") } },
  settings: {
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const contract = output.contracts[path.basename(source)][name];
const artifact = {
  contractName: name,
  compiler: { name: "solc", version: solc.version(), evmVersion: input.settings.evmVersion, optimizer: input.settings.optimizer },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
fs.writeFileSync(target, JSON.stringify(artifact, null, 2) + "\n");
console.log(`${target}: ${name}, solc ${solc.version()}, ${contract.evm.bytecode.object.length / 2} bytes`);
JS
