#!/usr/bin/env bash
# Build the arm64 (Debian 12) sysroot that `make deb ARCH=arm64` cross-builds
# against, and install the cross tools it needs. Run once, as root; about 5 min
# and 600 MB. The sysroot lives outside the repository (default
# /work/sysroot-arm64, override with BRAID_ARM64_SYSROOT).
#
# Recipe (packaging/README.md "arm64"):
#   1. cross gcc/binutils, qemu-user-static and debootstrap from Debian;
#   2. rustup target aarch64-unknown-linux-gnu;
#   3. `debootstrap --foreign --arch=arm64 --variant=minbase --include=<GStreamer
#      dev + runtime>` downloads every needed arm64 .deb (the second stage would
#      need an arm64 kernel or binfmt_misc, which this machine lacks);
#   4. every downloaded .deb is unpacked with `dpkg-deb -x`, so the sysroot holds
#      the arm64 libraries, headers and .pc files, plus gst-inspect-1.0 to run
#      under qemu-aarch64-static.
set -euo pipefail
SYSROOT="${BRAID_ARM64_SYSROOT:-/work/sysroot-arm64}"
SUITE="${BRAID_ARM64_SUITE:-bookworm}"
MIRROR="${BRAID_ARM64_MIRROR:-http://deb.debian.org/debian}"
export PATH="$HOME/.cargo/bin:$PATH"

HOST_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
  qemu-user-static debootstrap dpkg-dev pkg-config)
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "arm64-sysroot: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu

# What the workspace links against (-dev) and what the checks run (tools, plugins).
INCLUDE=(
  libc6-dev linux-libc-dev libgcc-12-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
)
if [ -f "$SYSROOT/.braid-sysroot-ok" ]; then
  echo "arm64-sysroot: $SYSROOT is complete ($(cat "$SYSROOT/.braid-sysroot-ok"))"
  exit 0
fi
mkdir -p "$SYSROOT"
echo "arm64-sysroot: debootstrap --foreign $SUITE arm64 into $SYSROOT"
debootstrap --foreign --arch=arm64 --variant=minbase \
  --include="$(IFS=,; echo "${INCLUDE[*]}")" "$SUITE" "$SYSROOT" "$MIRROR" >"$SYSROOT.debootstrap.log" 2>&1 \
  || { tail -n 20 "$SYSROOT.debootstrap.log" >&2; exit 1; }
n=0
for deb in "$SYSROOT"/var/cache/apt/archives/*.deb; do
  dpkg-deb -x "$deb" "$SYSROOT"
  n=$((n + 1))
done
# Absolute symlinks inside the sysroot (e.g. lib.so -> /lib/...) would point at the
# host: make them relative to the sysroot.
find "$SYSROOT/usr/lib" "$SYSROOT/usr/include" -type l -lname '/*' 2>/dev/null | while read -r link; do
  target=$(readlink "$link")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$SYSROOT$target")" "$link"
done
test -f "$SYSROOT/usr/lib/aarch64-linux-gnu/pkgconfig/gstreamer-1.0.pc" \
  || { echo "arm64-sysroot: gstreamer-1.0.pc missing after unpacking" >&2; exit 1; }
echo "$n packages, $(date -u +%Y-%m-%dT%H:%MZ)" >"$SYSROOT/.braid-sysroot-ok"
echo "arm64-sysroot: ok, $n packages unpacked into $SYSROOT ($(du -sh "$SYSROOT" | cut -f1))"
