#!/usr/bin/env bash
# Debian's debug symbols for the arm64 kernel scripts/fetch-linux.sh fetched, for gdb (docs/linux.md,
# docs/debugging.md): the vmlinux ELF of linux-image-<release>-dbg, of exactly the booted kernel's
# Debian version, put next to the kernel as .cache/debian-arm64/root/boot/vmlinux-<release> (or
# under $SDEILAB_DEBIAN_CACHE). Not part of the default set-up: the package is about 262 MB to
# download (scripts/setup.sh --linux-symbols runs this; the gdb test tier runs it on first use).
#
# Only the one member usr/lib/debug/boot/vmlinux-<release> is extracted (dpkg-deb --fsys-tarfile |
# tar -x of that member; the package's module debug files, over a gigabyte unpacked, are not
# needed), and the .deb is removed afterwards. The version comes from the kernel Image's own banner
# ("... SMP Debian 6.1.192-3 ..."), and the extracted vmlinux must carry the same banner, byte for
# byte, or it is thrown away: symbols of another build would put every breakpoint in the wrong place.
# Run again: nothing is done when the vmlinux is already there. fetch-linux.sh unpacks root/ afresh
# when the kernel changes, which removes a vmlinux of the old one; run this again then.
# Prints the vmlinux's path as its last line of standard output (progress goes to standard error).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${SDEILAB_DEBIAN_CACHE:-.cache/debian-arm64}
say() { echo "fetch-linux-symbols: $*" >&2; }
die() { say "$*"; exit 1; }

images=("$cache"/root/boot/vmlinuz-*)
[ -e "${images[0]}" ] || die "no kernel in $cache/root/boot: run scripts/fetch-linux.sh first"
[ ${#images[@]} -eq 1 ] || die "several kernels in $cache/root/boot (${images[*]##*/}): run scripts/fetch-linux.sh again"
image=${images[0]}
release=${image##*/vmlinuz-}
vmlinux="$cache/root/boot/vmlinux-$release"

# The banner (init/version.c linux_banner) names the release, the compiler and the Debian version.
banner_of() { LC_ALL=C grep -a -o -m 1 "Linux version $release (.*" "$1" | head -n 1; }
banner=$(banner_of "$image")
[ -n "$banner" ] || die "$image has no 'Linux version $release' banner: is it an arm64 Image?"
version=$(sed -n 's/.* SMP Debian \([^ ]*\) .*/\1/p' <<<"$banner")
[ -n "$version" ] || die "no Debian version in the kernel's banner: $banner"

if [ -s "$vmlinux" ] && [ "$(banner_of "$vmlinux")" = "$banner" ]; then
  echo "$vmlinux"
  exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs Debian's apt-get and dpkg-deb"
dpkg --print-foreign-architectures | grep -qx arm64 || die "arm64 is not a dpkg architecture here: run scripts/fetch-linux.sh first"
package="linux-image-$release-dbg"
work="$cache/debs/.symbols.$$"
trap 'rm -rf "$work" "$vmlinux.tmp.$$"' EXIT
mkdir -p "$work"
say "downloading $package $version (arm64, about 262 MB)"
# As root apt hands the download to its _apt user, who cannot write a root-owned cache.
if ! (cd "$work" && apt-get download -q $([ "$(id -u)" -eq 0 ] && echo -o APT::Sandbox::User=root) \
      "$package:arm64=$version" >&2); then
  die "apt-get download $package:arm64=$version failed. The mirror may no longer have the version the cached
kernel is (a newer one replaced it): run scripts/fetch-linux.sh for the current kernel, then this again.
Debian keeps -dbg packages in the main archive (and its security updates); check the apt sources list them."
fi
deb=$(compgen -G "$work/${package}_*_arm64.deb" | head -n 1) || die "apt-get download left no $package .deb in $work"
member="./usr/lib/debug/boot/vmlinux-$release"
say "extracting $member"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" "$member" \
  || die "$deb has no $member"
[ "$(banner_of "$work/$member")" = "$banner" ] \
  || die "the vmlinux of $deb is not the cached kernel's build (banners differ): $(banner_of "$work/$member")"
# A rename in one folder: someone reading the cache sees no vmlinux or the whole of it.
mv "$work/$member" "$vmlinux.tmp.$$"
mv "$vmlinux.tmp.$$" "$vmlinux"
say "$(du -h "$vmlinux" | cut -f1) in $vmlinux"
echo "$vmlinux"
