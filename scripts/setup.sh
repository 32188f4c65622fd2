#!/usr/bin/env bash
# Install everything Braid needs to build, test and run the demo on a fresh Debian 12
# machine (run as root). Idempotent: does nothing when all is present.
set -euo pipefail

APT_PACKAGES=(
  # build
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  # runtime: sources, x264/x265, mpegtsmux, decoders for verification
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  # ALSA capture (alsasrc) for V4L2 grabbers' sound cards; ffprobe for the pipeline tests
  gstreamer1.0-alsa ffmpeg
  # interop peer (librist ristsender/ristreceiver) and test tools
  rist-tools iproute2 procps
  # v4l crate (bindgen); D-Bus device tests: private dbus-daemon, dbus-python and
  # PyGObject from Debian for the python-dbusmock venv below
  libclang-dev dbus python3-venv python3-dbus python3-gi
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain (cargo) found; install rustup's stable toolchain (>= 1.92)" >&2
    exit 1
  fi
fi
# python-dbusmock >= 0.32 (the `modemmanager` template; Debian has 0.28) in a venv
# that sees Debian's dbus-python and PyGObject, so nothing is compiled. Tests find it
# at target/dbusmock-venv (or $BRAID_DBUSMOCK_PYTHON).
DBUSMOCK_VENV="$(cd "$(dirname "$0")/.." && pwd)/target/dbusmock-venv"
if ! "$DBUSMOCK_VENV/bin/python" -c 'import dbus, gi, dbusmock.templates.modemmanager' 2>/dev/null; then
  echo "setup: python-dbusmock venv in $DBUSMOCK_VENV"
  mkdir -p "$(dirname "$DBUSMOCK_VENV")"
  /usr/bin/python3 -m venv --clear --system-site-packages "$DBUSMOCK_VENV"
  "$DBUSMOCK_VENV/bin/pip" install -q --disable-pip-version-check 'python-dbusmock>=0.32'
fi

rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "setup: ok ($(pkg-config --modversion gstreamer-1.0 | sed 's/^/GStreamer /'), $(cargo --version))"
