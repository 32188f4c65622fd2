#!/usr/bin/env bash
# Build the Debian package `braid` (packaging/README.md):
#   scripts/deb.sh [amd64|arm64]     (make deb, make deb ARCH=arm64)
#   scripts/deb.sh --list-plugins    (the plugin files the package installs)
# Release-builds braid-agent and every GStreamer plugin crate under gst-plugins/
# (each crate whose Cargo.toml has a cdylib), checks that the variant's plugin
# directory is `pkg-config --variable=pluginsdir gstreamer-1.0` of the target, and
# runs `cargo deb --no-build --variant ARCH`. arm64 cross-builds against the sysroot
# made by scripts/arm64-sysroot.sh ($BRAID_ARM64_SYSROOT, default /work/sysroot-arm64).
# Prints the path of the .deb on its last line: target/deb/braid_VERSION_ARCH.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

ARCH="${1:-${ARCH:-amd64}}"
[ "$ARCH" = --list-plugins ] && ARCH=amd64
OUT=target/deb
die() { echo "deb: $*" >&2; exit 1; }

case "$ARCH" in
  amd64) TRIPLE=x86_64-unknown-linux-gnu MULTIARCH=x86_64-linux-gnu CROSS=0 ;;
  arm64) TRIPLE=aarch64-unknown-linux-gnu MULTIARCH=aarch64-linux-gnu CROSS=1 ;;
  *) die "ARCH must be amd64 or arm64, not '$ARCH'" ;;
esac
[ "$CROSS" = 1 ] || [ "$(dpkg --print-architecture)" = amd64 ] \
  || die "native builds are for amd64 hosts; use ARCH=arm64 to cross-build"
command -v cargo-deb >/dev/null || die "cargo-deb missing: run 'make setup' (cargo install cargo-deb --locked)"

# The plugins the package installs: every crate of gst-plugins/ whose Cargo.toml
# has a cdylib (Braid's own), and every GStreamer plugin crate from crates.io in
# [workspace.dependencies] (`gst-plugin-NAME = { version = …`, e.g. gst-plugins-rs'
# fallbackswitch, which the agent registers statically but which the printed
# gst-launch-1.0 lines need installed), each with the file it builds.
plugin_packages=()
plugin_files=()
for manifest in gst-plugins/*/Cargo.toml; do
  grep -q '"cdylib"' "$manifest" || continue
  pkg=$(sed -n '/^\[package\]/,/^\[/s/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
  lib=$(sed -n '/^\[lib\]/,/^\[/s/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
  [ -n "$lib" ] || lib=${pkg//-/_}
  plugin_packages+=("$pkg")
  plugin_files+=("lib$lib.so")
done
while read -r name; do
  [ "$name" = version-helper ] && continue
  plugin_packages+=("gst-plugin-$name")
  plugin_files+=("libgst$name.so")
done < <(sed -n '/^\[workspace.dependencies\]/,/^\[/s/^gst-plugin-\([a-z0-9]*\) *= *{ *version.*/\1/p' Cargo.toml)
((${#plugin_packages[@]})) || die "no plugin crate (cdylib) found under gst-plugins/"
case " ${plugin_files[*]} " in *" libgstristbond.so "*) ;; *) die "libgstristbond.so is not among the plugins: ${plugin_files[*]}" ;; esac
if [ "${1:-}" = --list-plugins ] || [ "${2:-}" = --list-plugins ]; then
  printf '%s\n' "${plugin_files[@]}"
  exit 0
fi

# Version: Cargo's (workspace) version must head packaging/changelog.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
changelog_version=$(sed -n '1s/^braid (\([^)]*\)).*/\1/p' packaging/changelog)
[ "${changelog_version%-*}" = "$version" ] \
  || die "packaging/changelog starts with $changelog_version but the workspace version is $version: add a changelog entry"

build_args=(--release --locked -p braid-agent)
for p in "${plugin_packages[@]}"; do build_args+=(-p "$p"); done
# DEB_REVISION overrides the Debian revision (scripts/deb-test.sh builds an
# "upgrade" package with it).
revision="${DEB_REVISION:-${changelog_version##*-}}"
deb_args=(-p braid-agent --no-build --variant "$ARCH" --output "$OUT/" --deb-revision "$revision")
# DEB_FAST=1: lighter compression (test packages that are thrown away).
[ "${DEB_FAST:-0}" = 1 ] && deb_args+=(--fast)

if [ "$CROSS" = 1 ]; then
  SYSROOT="${BRAID_ARM64_SYSROOT:-/work/sysroot-arm64}"
  [ -f "$SYSROOT/.braid-sysroot-ok" ] \
    || die "no arm64 sysroot at $SYSROOT: build it with scripts/arm64-sysroot.sh (packaging/README.md)"
  command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing: run scripts/arm64-sysroot.sh"
  rustup target list --installed | grep -qx "$TRIPLE" || die "rustup target $TRIPLE missing: run scripts/arm64-sysroot.sh"
  LIBDIR="$SYSROOT/usr/lib/$MULTIARCH"
  export PKG_CONFIG_SYSROOT_DIR="$SYSROOT"
  export PKG_CONFIG_LIBDIR="$LIBDIR/pkgconfig:$SYSROOT/usr/share/pkgconfig"
  export PKG_CONFIG_ALLOW_CROSS=1
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$SYSROOT -C link-arg=-Wl,-rpath-link,$LIBDIR -C link-arg=-L$LIBDIR"
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$SYSROOT -I$SYSROOT/usr/include/$MULTIARCH"
  build_args+=(--target "$TRIPLE")
  deb_args+=(--target "$TRIPLE")
  release_dir="target/$TRIPLE/release"
else
  release_dir="target/release"
fi

# The plugin directory of the target's GStreamer must be the variant's.
pluginsdir=$(pkg-config --variable=pluginsdir gstreamer-1.0) || die "pkg-config cannot find gstreamer-1.0 for $ARCH"
pluginsdir="${pluginsdir#"${PKG_CONFIG_SYSROOT_DIR:-}"}"
expected="/usr/lib/$MULTIARCH/gstreamer-1.0"
[ "$pluginsdir" = "$expected" ] \
  || die "pkg-config says the $ARCH plugin directory is $pluginsdir, agent/Cargo.toml [package.metadata.deb.variants.$ARCH] installs to $expected"
grep -q "\"usr/lib/$MULTIARCH/gstreamer-1.0/\"" agent/Cargo.toml \
  || die "agent/Cargo.toml has no $ARCH variant installing to usr/lib/$MULTIARCH/gstreamer-1.0/"

echo "deb: cargo build ${build_args[*]}"
cargo build "${build_args[@]}" 2>&1 | grep -Ev '^\s+(Compiling|Checking|Downloaded|Downloading)' || true
[ -x "$release_dir/braid-agent" ] || die "the build did not produce $release_dir/braid-agent"
# Exactly this workspace's plugins: a libgst*.so left by a crate that is gone
# must not slip into the package through the asset glob.
for f in "$release_dir"/libgst*.so; do
  [ -e "$f" ] || continue
  case " ${plugin_files[*]} " in *" $(basename "$f") "*) ;; *) echo "deb: removing stale $f"; rm -f "$f" ;; esac
done
for f in "${plugin_files[@]}"; do
  [ -f "$release_dir/$f" ] || die "the build did not produce $release_dir/$f"
done

mkdir -p "$OUT"
deb=$(cargo deb "${deb_args[@]}" 2>"$OUT/cargo-deb-$ARCH.log" | tail -n 1) \
  || { cat "$OUT/cargo-deb-$ARCH.log" >&2; die "cargo deb failed"; }
grep -i warning "$OUT/cargo-deb-$ARCH.log" >&2 || true
[ -f "$deb" ] || die "cargo deb did not report a package (log: $OUT/cargo-deb-$ARCH.log)"
echo "deb: plugins ${plugin_files[*]} -> $expected"
echo "deb: $(du -h "$deb" | cut -f1) $deb"
echo "$deb"
