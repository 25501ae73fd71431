#!/usr/bin/env bash
# Debian packages sdeilab needs that PyPI does not provide:
#   qemu-system-arm   - qemu-system-aarch64, the reference the guests are compared against
#   chromium          - the browser the real-browser tests (tests/test_browser.py) drive through the
#                       Playwright Python package at /usr/bin/chromium; Playwright never downloads one
#   fonts-liberation  - metric-compatible fonts so that headless screenshots show readable text
#   device-tree-compiler - dtc, which tests/test_devicetree.py uses to check the generated device tree
#   gcc-aarch64-linux-gnu, make - the cross compiler (aarch64-linux-gnu-gcc-12: Debian's arm64 kernel
#                       was built by gcc-12 12.2.0, its CONFIG_CC_VERSION_TEXT) and make, with which
#                       scripts/build-linux-module.sh builds guests/linux/ modules against the kernel headers
# and dpkg's arm64 architecture, so that apt-get download fetches Debian's arm64 kernel packages.
# and what scripts/build-tfa.sh needs to build TF-A, the SDEI reference the tfa test tier builds on
# first use (issue 18):
#   dpkg-dev          - dpkg-source (and patch), which unpack Debian's arm-trusted-firmware source package
#   gcc, libc6-dev, libssl-dev - the host compiler and OpenSSL's libcrypto for TF-A's fiptool
# (the cross compiler and make are in the list above already).
# and what the GDB server's tests drive (issue 16, docs/debugging.md):
#   gdb-multiarch     - Debian's gdb with the AArch64 target, run in batch mode against `sdeilab run --gdb`
# and what the workshop hub needs (issue 17, docs/workshop.md):
#   nodejs, npm       - Node.js runs configurable-http-proxy, JupyterHub's proxy, which scripts/setup.sh
#                       installs from the npm registry with npm. Skipped when node and npm are already
#                       there (NodeSource's nodejs package carries its own npm and conflicts with Debian's).
set -euo pipefail
packages=(qemu-system-arm chromium fonts-liberation device-tree-compiler gcc-aarch64-linux-gnu make
          dpkg-dev gcc libc6-dev libssl-dev gdb-multiarch)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
for arg in "$@"; do
  case $arg in
    --with-tfa) ;;  # the packages are always installed; scripts/setup.sh --with-tfa also builds TF-A
    *) echo "usage: $0 [--with-tfa]" >&2; exit 2 ;;
  esac
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
