#!/usr/bin/env bash
# Install the PC/SC stack the terminal tests use: pcscd, vsmartcard's virtual reader (vpcd),
# opensc-tool, and what pyscard needs to build (libpcsclite-dev, swig, a C compiler).
# Idempotent: packages already present are left alone; pyscard is installed into the project's
# virtualenv (.venv) when it is missing.
set -euo pipefail

packages=(pcscd vsmartcard-vpcd opensc libpcsclite-dev swig gcc python3-dev pkg-config)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

venv_python="$(dirname "$0")/../.venv/bin/python"
if [[ -x "$venv_python" ]] && ! "$venv_python" -c "import smartcard" 2>/dev/null; then
  "$venv_python" -m pip install "pyscard>=2.2,<3"
fi
echo "PC/SC stack ready: $(command -v pcscd) $(dpkg -L vsmartcard-vpcd | grep -m1 'libifdvpcd') "
