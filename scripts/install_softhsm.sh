#!/usr/bin/env bash
# Install SoftHSM2, the PKCS#11 token tests/keys/ keep the platform's keys in (docs/operations.md,
# "Keys in an HSM").  Idempotent and quiet: nothing is installed when softhsm2-util and the module
# are already there.  Tests make their own token in a temporary directory (SOFTHSM2_CONF pointing
# at a temporary config), so nothing global is configured here.
set -euo pipefail

module_path() {
  for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so; do
    [[ -e $candidate ]] && { echo "$candidate"; return 0; }
  done
  return 1
}

if ! command -v softhsm2-util >/dev/null 2>&1 || ! module_path >/dev/null; then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    softhsm2 >/dev/null
fi
echo "softhsm2 ready: $(module_path) ($(softhsm2-util --version))"
