#!/usr/bin/env bash
# Install nginx, the reverse proxy tests/attack/test_reverse_proxy.py puts in front of `ecard serve`
# (see docs/deployment.md).  Idempotent: nothing is installed when nginx is already there.
# The test runs its own nginx (non-daemon, a temporary config and prefix); the system service the
# package may start is not used.
set -euo pipefail

if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends nginx
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
echo "nginx ready: $nginx_bin ($("$nginx_bin" -v 2>&1))"
