#!/usr/bin/env bash
# Set up everything sdeilab needs on a Debian machine with Python 3.11:
# Debian packages (scripts/setup-debian.sh), Debian's arm64 kernel and busybox in .cache/debian-arm64
# (scripts/fetch-linux.sh: what booting Linux on the lab needs, docs/linux.md), then a virtualenv
# in .venv with the project installed from pyproject.toml (editable, with the lab, test and hub extras),
# and JupyterHub's proxy, configurable-http-proxy, from the npm registry into .cache/npm (`sdeilab hub`).
# --with-tfa also builds TF-A now (scripts/build-tfa.sh: Debian's arm-trusted-firmware for QEMU with
# SDEI, the reference of tests/test_tfa.py); without it the tfa test tier builds it on first use.
# --linux-symbols also fetches the kernel's debug symbols now (scripts/fetch-linux-symbols.sh: the
# vmlinux of Debian's linux-image-<release>-dbg, a 262 MB download, for gdb); without it the gdb
# tests of tests/test_gdb_linux.py fetch them on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
with_tfa=()
linux_symbols=false
for arg in "$@"; do
  case $arg in
    --with-tfa) with_tfa=(--with-tfa) ;;
    --linux-symbols) linux_symbols=true ;;
    *) echo "usage: $0 [--with-tfa] [--linux-symbols]" >&2; exit 2 ;;
  esac
done
bash scripts/setup-debian.sh "${with_tfa[@]}"
bash scripts/fetch-linux.sh
if $linux_symbols; then
  bash scripts/fetch-linux-symbols.sh >/dev/null
fi
# Debian's headers for that kernel, and guests/linux/sdei_watchdog built against them (tests/test_linux_module.py)
bash scripts/build-linux-module.sh sdei_watchdog >/dev/null
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[lab,test,hub]"
# 4.6.3: the newest that runs on bookworm's Node.js 18 (5.x wants Node 20); deploy/jupyterhub_config.py uses it.
if [ "$(.cache/npm/node_modules/.bin/configurable-http-proxy --version 2>/dev/null)" != 4.6.3 ]; then
  npm install --prefix .cache/npm --no-audit --no-fund --loglevel=error configurable-http-proxy@4.6.3 >/dev/null
fi
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
if [ ${#with_tfa[@]} -gt 0 ]; then
  bash scripts/build-tfa.sh >/dev/null
fi
