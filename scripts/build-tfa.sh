#!/usr/bin/env bash
# A real TF-A as the SDEI reference (issue 18): Debian's arm-trusted-firmware source package, built
# for QEMU's virt board (PLAT=qemu) with the SDEI dispatcher, EHF and the GICv3 driver.
#
#   bash scripts/build-tfa.sh [--debug]
#
# 1. Fetches the source package (.dsc + tarballs) into .cache/tfa/pkg with `apt-get source
#    --download-only`, only when no .dsc is there yet. A private deb-src list for $TFA_SUITE (trixie)
#    with the archive URL of the machine's own sources is used through -o options: the machine's
#    apt configuration and lists are not touched.
# 2. Unpacks it with dpkg-source -x (Debian's own patches applied) into .cache/tfa/work/KEY and applies
#    scripts/tfa-patches/*.patch in name order (each says in its header what it changes and why).
# 3. Builds BL1, BL2, BL31 and a FIP with a placeholder BL33 (release; with --debug also DEBUG=1
#    LOG_LEVEL=50 into debug/), plus TF-A's fiptool, which swaps BL33 in a copy of the FIP
#    (`fiptool update --nt-fw GUEST.bin`, see sdeilab.machine.qemu.tfa_bios) without rebuilding TF-A.
# 4. Leaves bl1.bin, bl2.bin, bl31.bin, bl31.elf, fip.bin, fiptool and BUILD-INFO in
#    .cache/tfa/out/KEY, KEY = source version + a hash of the patches and the build options.
#    Idempotent: a complete folder is reused as it is. The folder's path is the last line printed.
#
# Needs the packages `scripts/setup-debian.sh --with-tfa` installs (dpkg-dev, gcc-aarch64-linux-gnu,
# make, gcc, libc6-dev and libssl-dev for fiptool). SDEILAB_TFA_CACHE moves .cache/tfa elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${SDEILAB_TFA_CACHE:-$repo/.cache/tfa}
suite=${TFA_SUITE:-trixie}
package=arm-trusted-firmware
debug=0
for arg in "$@"; do
  case $arg in
    --debug) debug=1 ;;
    *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
  esac
done
# The options the reference is built with (the key depends on them).
tfa_options=(PLAT=qemu SDEI_SUPPORT=1 EL3_EXCEPTION_HANDLING=1 QEMU_USE_GIC_DRIVER=QEMU_GICV3)
cross=${CROSS_COMPILE:-aarch64-linux-gnu-}
for tool in dpkg-source "${cross}gcc" make gcc patch; do
  command -v "$tool" >/dev/null || { echo "build-tfa: $tool not found: run scripts/setup-debian.sh --with-tfa" >&2; exit 1; }
done

elapsed() {  # seconds since $1 (date +%s%N), with one decimal
  local ms=$(( ($(date +%s%N) - $1) / 1000000 ))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# ------------------------------------------------------------------ 1. the source package
mkdir -p "$cache/pkg"
archive_uri() {
  # The Debian archive the machine itself uses (deb822 .sources first, then one-line lists).
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | tr ' ' '\n' | grep -E '/debian/?$' | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | grep -E '/debian/?$' | head -n 1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
dsc=$(ls "$cache"/pkg/${package}_*.dsc 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$dsc" ]; then
  apt_dir="$cache/apt"
  mkdir -p "$apt_dir/lists/partial"
  cat > "$apt_dir/$suite-src.sources" <<EOF
Types: deb-src
URIs: $(archive_uri)
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_opts=(-q -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir"
            -o "Dir::State::Lists=$apt_dir/lists" -o Dir::Cache="$apt_dir/cache")
  # As root apt hands downloads to its _apt user, who cannot write a root-owned cache.
  [ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
  mkdir -p "$apt_dir/cache/archives/partial"
  start=$(date +%s%N)
  apt-get "${apt_opts[@]}" update >&2
  (cd "$cache/pkg" && apt-get "${apt_opts[@]}" source --download-only "$package" >&2)
  echo "build-tfa: fetched $package in $(elapsed "$start") s" >&2
  dsc=$(ls "$cache"/pkg/${package}_*.dsc | sort -V | tail -n 1)
fi
version=$(sed -n 's/^Version: //p' "$dsc" | head -n 1)

# ------------------------------------------------------------------ 2. the key, unpack, patch
patches=(scripts/tfa-patches/*.patch)
[ -e "${patches[0]}" ] || patches=()
key_text=$( { echo "$version"; echo "${tfa_options[*]}"; echo "$cross"; \
              for p in "${patches[@]}"; do echo "== $(basename "$p")"; cat "$p"; done; } )
key="${version}-$(printf '%s' "$key_text" | sha256sum | cut -c1-12)"
out="$cache/out/$key"
work="$cache/work/$key"

built() {  # $1 = folder: complete when BUILD-INFO (written last) is there
  [ -f "$1/BUILD-INFO" ] && [ -s "$1/bl1.bin" ] && [ -s "$1/fip.bin" ]
}
if built "$out" && { [ "$debug" -eq 0 ] || built "$out/debug"; }; then
  echo "$out"
  exit 0
fi

if [ ! -f "$work/.patched" ]; then
  rm -rf "$work"
  mkdir -p "$work"
  dpkg-source -q -x "$dsc" "$work/src" >&2
  for p in "${patches[@]}"; do
    echo "build-tfa: applying $(basename "$p")" >&2
    patch -d "$work/src" -p1 --batch --forward --quiet < "$p" \
      || { echo "build-tfa: $(basename "$p") does not apply to $package $version" >&2; exit 1; }
  done
  touch "$work/.patched"
fi

# ------------------------------------------------------------------ 3. build
# BL33 is only a placeholder (`b .`): the guest replaces it in a copy of the FIP.
printf '\x00\x00\x00\x14' > "$work/bl33-placeholder.bin"
jobs=${TFA_JOBS:-2}

build_one() {  # $1 = release|debug, then make variables
  local kind=$1 dest
  shift
  dest=$out
  [ "$kind" = debug ] && dest=$out/debug
  built "$dest" && return 0
  local start
  start=$(date +%s%N)
  make -C "$work/src" -j"$jobs" CROSS_COMPILE="$cross" "${tfa_options[@]}" "$@" \
    BUILD_BASE="$work/build" BL33="$work/bl33-placeholder.bin" all fip >"$work/build-$kind.log" 2>&1 \
    || { tail -n 40 "$work/build-$kind.log" >&2; echo "build-tfa: the $kind build failed (log: $work/build-$kind.log)" >&2; exit 1; }
  local seconds
  seconds=$(elapsed "$start")
  local plat="$work/build/qemu/$kind"
  mkdir -p "$dest"
  cp "$plat/bl1.bin" "$plat/bl2.bin" "$plat/bl31.bin" "$plat/fip.bin" "$dest/"
  cp "$plat/bl31/bl31.elf" "$dest/bl31.elf"
  cp "$work/src/tools/fiptool/fiptool" "$dest/fiptool"
  {
    echo "package: $package $version ($suite)"
    echo "options: ${tfa_options[*]} $*"
    echo "cross: $("${cross}gcc" --version | head -n 1)"
    echo "patches: $(for p in "${patches[@]}"; do basename "$p"; done | tr '\n' ' ')"
    echo "build seconds: $seconds"
  } > "$dest/BUILD-INFO"
  echo "build-tfa: $kind build in $seconds s" >&2
}
build_one release
[ "$debug" -eq 1 ] && build_one debug DEBUG=1 LOG_LEVEL=50
echo "$out"
