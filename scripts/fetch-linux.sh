#!/usr/bin/env bash
# Debian's arm64 Linux kernel and busybox, for booting Linux on the lab (docs/linux.md):
#   linux-image-<version>-cloud-arm64  the versioned package linux-image-cloud-arm64 depends on
#                                      (built with CONFIG_ARM_SDE_INTERFACE, PSCI, PL011, GICv3)
#   busybox-static                     the initramfs's only program (sdeilab/linux/initramfs.py)
# Both are downloaded as .deb files with `apt-get download` (nothing is installed on the host) and
# unpacked with `dpkg-deb -x` into .cache/debian-arm64/root (or $SDEILAB_DEBIAN_CACHE/root), outside
# git; the cache's debs/ folder is shared with scripts/build-linux-module.sh (the kernel headers).
# Needs arm64 as a dpkg foreign architecture, which is added (with an apt-get update) if missing.
# Run again to pick up a newer kernel; packages already in the cache are not downloaded again.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${SDEILAB_DEBIAN_CACHE:-.cache/debian-arm64}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
fi

image_package() {
  apt-cache depends linux-image-cloud-arm64:arm64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -n 1
}
image=$(image_package)
if [ -z "$image" ]; then  # arm64 lists not fetched yet on this machine
  $sudo apt-get update -qq
  image=$(image_package)
fi
[ -n "$image" ] || { echo "fetch-linux: no linux-image-cloud-arm64:arm64 in the apt sources" >&2; exit 1; }
packages=("$image" busybox-static)

download() {
  # As root apt hands the download to its _apt user, who cannot write a root-owned cache.
  (cd "$cache/debs" && apt-get download -q $([ "$(id -u)" -eq 0 ] && echo -o APT::Sandbox::User=root) "$1")
}
mkdir -p "$cache/debs"
wanted=()
for p in "${packages[@]}"; do
  version=$(apt-cache show --no-all-versions "$p:arm64" | sed -n 's/^Version: //p' | head -n 1)
  # apt-get download names files NAME_VERSION_arm64.deb, with the epoch's ':' as %3a
  deb="$cache/debs/${p}_${version//:/%3a}_arm64.deb"
  if [ ! -s "$deb" ]; then
    download "$p:arm64=$version" || true
    if [ ! -s "$deb" ]; then  # the lists may name a version the mirror no longer has
      $sudo apt-get update -qq
      version=$(apt-cache show --no-all-versions "$p:arm64" | sed -n 's/^Version: //p' | head -n 1)
      deb="$cache/debs/${p}_${version//:/%3a}_arm64.deb"
      download "$p:arm64=$version"
    fi
  fi
  wanted+=("$deb")
done

# Unpack afresh whenever the set of packages changed, so exactly one kernel is in root/boot.
stamp="$cache/root/.packages"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${wanted[*]}" ]; then
  rm -rf "$cache/root"
  mkdir -p "$cache/root"
  for deb in "${wanted[@]}"; do
    dpkg-deb -x "$deb" "$cache/root"
  done
  echo "${wanted[*]}" > "$stamp"
fi
# Drop this script's own packages of older versions (a superseded kernel); others' stay.
for deb in "$cache"/debs/linux-image-[0-9]*-cloud-arm64_*.deb "$cache"/debs/busybox-static_*.deb; do
  [ -e "$deb" ] || continue
  case " ${wanted[*]} " in *" $deb "*) ;; *) rm -f "$deb" ;; esac
done
ls "$cache"/root/boot/vmlinuz-* "$cache/root/bin/busybox" >/dev/null
