#!/usr/bin/env bash
# Debian packages sdeilab needs that PyPI does not provide:
#   qemu-system-arm   - qemu-system-aarch64, the reference the guests are compared against
#   chromium          - the browser the real-browser tests (tests/test_browser.py) drive through the
#                       Playwright Python package at /usr/bin/chromium; Playwright never downloads one
#   fonts-liberation  - metric-compatible fonts so that headless screenshots show readable text
#   device-tree-compiler - dtc, which tests/test_devicetree.py uses to check the generated device tree
set -euo pipefail
packages=(qemu-system-arm chromium fonts-liberation device-tree-compiler)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
