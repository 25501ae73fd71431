#!/usr/bin/env bash
# Build an out-of-tree module of guests/linux/ for Debian's arm64 cloud kernel, with Debian's own
# packages only, into a cache outside git (nothing built from Debian's packages is committed).
#
#   scripts/build-linux-module.sh [MODULE [RELEASE]]
#     MODULE   a folder of guests/linux/ with a Kbuild file (default: sdei_watchdog)
#     RELEASE  the kernel release, e.g. 6.1.0-56-cloud-arm64 (default: that of the kernel
#              scripts/fetch-linux.sh put in the cache's root/boot, else the one Debian's
#              linux-image-cloud-arm64 depends on now)
#   $SDEILAB_DEBIAN_CACHE  the cache (default: .cache/debian-arm64 in the repository)
#
# Prints the .ko's path as its last line of standard output (progress goes to standard error).
#
# What it puts together, and why:
#   linux-headers-RELEASE:arm64   the flavour's .config, generated headers and Module.symvers (the
#                                 CRCs modversions checks at load time)
#   linux-headers-ABI-common      the headers and Makefiles the flavour's Makefile includes
#   linux-kbuild-6.1 (amd64)      fixdep, modpost, genksyms: host programs, so the build machine's
#                                 architecture, of the SAME version as the headers (the arm64 package
#                                 of that name holds arm64 binaries, which cannot run here)
#   aarch64-linux-gnu-gcc-12      the headers' .kernelvariables set CC = $(CROSS_COMPILE)gcc-12, the
#                                 major version the kernel was built with (scripts/setup-debian.sh)
# The packages are unpacked with dpkg-deb -x, not installed. The flavour's Makefile includes the
# common one by its absolute /usr/src path, which is rewritten to the unpacked copy.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
module=${1:-sdei_watchdog}
cache=${SDEILAB_DEBIAN_CACHE:-$repo/.cache/debian-arm64}
release=${2:-}
if [ -z "$release" ]; then
  fetched=$(compgen -G "$cache/root/boot/vmlinuz-*" | head -n 1 || true)
  release=${fetched##*/vmlinuz-}
fi
src=$repo/guests/linux/$module
say() { echo "build-linux-module: $*" >&2; }
die() { say "$*"; exit 1; }

[ -f "$src/Kbuild" ] || die "no module at $src (a folder with a Kbuild file)"
command -v aarch64-linux-gnu-gcc-12 >/dev/null || die "aarch64-linux-gnu-gcc-12 missing: run scripts/setup-debian.sh"
command -v make >/dev/null || die "make missing: run scripts/setup-debian.sh"
dpkg --print-foreign-architectures | grep -qx arm64 || die "dpkg does not know arm64: run scripts/setup-debian.sh"

field() {  # field PACKAGE NAME: a field of the candidate version of PACKAGE, empty if unknown
  apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n "s/^$2: //p" | head -n 1
}
if [ -z "$(field linux-image-cloud-arm64:arm64 Version)" ]; then
  say "apt knows no arm64 kernel: apt-get update"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
fi
if [ -z "$release" ]; then
  # linux-image-cloud-arm64 depends on linux-image-RELEASE (the current ABI, e.g. 6.1.0-56-cloud-arm64).
  release=$(field linux-image-cloud-arm64:arm64 Depends | grep -o 'linux-image-[0-9][^ ,]*-cloud-arm64' | head -n 1)
  release=${release#linux-image-}
  [ -n "$release" ] || die "cannot tell the current cloud-arm64 kernel release"
fi
headers=linux-headers-$release
version=$(field "$headers:arm64" Version)
[ -n "$version" ] || die "Debian has no $headers:arm64 (superseded? give the current release)"
depends=$(field "$headers:arm64" Depends)
common=$(grep -o 'linux-headers-[^ ,]*-common' <<<"$depends" | head -n 1)
kbuild=$(grep -o 'linux-kbuild-[0-9.]*' <<<"$depends" | head -n 1)
[ -n "$common" ] && [ -n "$kbuild" ] || die "unexpected dependencies of $headers: $depends"

debs=$cache/debs
mkdir -p "$debs"
fetch() {  # fetch PACKAGE[:ARCH]: the .deb of $version, downloaded once
  local name=${1%%:*}
  if ! compgen -G "$debs/${name}_${version//:/%3a}_*.deb" >/dev/null; then
    say "apt-get download $1=$version"
    # As root apt hands the download to its _apt user, who cannot write a root-owned cache.
    (cd "$debs" && apt-get download -q $([ "$(id -u)" -eq 0 ] && echo -o APT::Sandbox::User=root) \
      "$1=$version" >&2)
  fi
}
fetch "$headers:arm64"
fetch "$common"  # Architecture: all
fetch "$kbuild:amd64"

tree=$cache/kbuild/$release
stamp="$release $version"
if [ "$(cat "$tree/.unpacked" 2>/dev/null)" != "$stamp" ]; then
  say "unpacking $headers, $common and $kbuild $version into $tree"
  rm -rf "$tree"
  mkdir -p "$tree"
  for name in "$headers" "$common" "$kbuild"; do
    dpkg-deb -x "$(compgen -G "$debs/${name}_${version//:/%3a}_*.deb" | head -n 1)" "$tree"
  done
  sed -i "s#^include /usr/src/#include $tree/usr/src/#" "$tree/usr/src/$headers/Makefile"
  rc=0; "$tree/usr/src/$headers/scripts/basic/fixdep" >/dev/null 2>&1 || rc=$?
  [ "$rc" -ne 126 ] && [ "$rc" -ne 127 ] || die "the unpacked fixdep does not run on $(uname -m)"
  echo "$stamp" >"$tree/.unpacked"
fi

# Kbuild writes its objects next to the sources: build a copy, never in guests/. The module lands
# in a folder named after what it was built from (the sources and the headers' version), and is
# built in a folder of its own first, renamed into place when done: several kernels may ask for it
# at once (a notebook open in JupyterLab and as a dashboard, a room of students on one hub), and
# none may see another's half-built or deleted files. An unchanged module is not built again.
key=$( (echo "$release $version"; for f in $(cd "$src" && ls Kbuild *.c *.h 2>/dev/null | sort); do
          echo "$f"; cat "$src/$f"; done) | sha256sum | cut -c1-16)
final=$cache/build/$release/$module-$key
ko=$final/$module.ko
if [ -f "$ko" ]; then
  echo "$ko"
  exit 0
fi
mkdir -p "$cache/build/$release"
build=$(mktemp -d "$cache/build/$release/.$module.XXXXXX")
trap 'rm -rf "$build"' EXIT
cp "$src"/*.c "$src"/Kbuild "$build"/
find "$src" -maxdepth 1 -name '*.h' -exec cp {} "$build"/ \;
say "make -C $tree/usr/src/$headers M=$build ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-"
make -C "$tree/usr/src/$headers" M="$build" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- >&2

[ -f "$build/$module.ko" ] || die "no $build/$module.ko"
aarch64-linux-gnu-objcopy -O binary --only-section=.modinfo "$build/$module.ko" "$build/modinfo.bin"
vermagic=$(tr '\0' '\n' <"$build/modinfo.bin" | sed -n 's/^vermagic=//p')
case "$vermagic" in
  "$release "*) say "vermagic: $vermagic" ;;
  *) die "vermagic '$vermagic' is not for $release" ;;
esac
# A rename is atomic; if another build got there first, its module (built from the same) is kept.
mv -T "$build" "$final" 2>/dev/null || [ -f "$ko" ] || die "cannot move the module to $final"
echo "$ko"
