#!/usr/bin/env bash
# The package test (packaging/README.md "The test"), one step of `make test`; run
# as root on Debian 12. Builds the amd64 .deb, lints it, installs it with apt-get,
# checks what it installed (plugins visible with no GST_PLUGIN_PATH, units,
# hardening figure, user and permissions, a real bonded stream by the installed
# agent as user braid), upgrades it over itself and to a higher revision (an
# edited conffile and the state survive), removes and purges it (state deleted).
# Then the arm64 cross build under qemu-aarch64-static, or a printed SKIP when
# the arm64 sysroot is absent. The machine is left as it was (trap), even on
# failure. Ends with `deb-test: OK …` or `deb-test: FAIL …`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
# Wait for the dpkg lock rather than fail when another apt-get runs; no
# Recommends (modemmanager would pull udev into the CI machine).
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)

PKG=braid
CONF=/etc/braid/agent.conf
STATE=/var/lib/braid
UNITDIR=/usr/lib/systemd/system
PLUGINDIR=$(pkg-config --variable=pluginsdir gstreamer-1.0)
MAX_EXPOSURE=2.5
T0=$(date +%s)
checks=0

fail() { echo "deb-test: FAIL $*" >&2; exit 1; }
ok() { checks=$((checks + 1)); echo "deb-test: ok   $*"; }
step() { echo "deb-test: [$(($(date +%s) - T0)) s] $*"; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs and purges the package)"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "installed\|config-files"; then
  fail "a '$PKG' package is already on this machine; this test installs and purges it (state included): remove it first"
fi

TMP=$(mktemp -d /tmp/braid-deb-test.XXXXXX)
chmod 0755 "$TMP"
user_existed=0
getent passwd braid >/dev/null && user_existed=1
group_existed=0
getent group braid >/dev/null && group_existed=1
installed_packages() { dpkg-query -W -f='${Package}:${Architecture} ${db:Status-Abbrev}\n' | awk '$2 ~ /^ii/ {print $1}' | sort; }
installed_packages >"$TMP/packages-before"
pids=()

cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "installed\|config-files\|half"; then
    dpkg --purge "$PKG" >/dev/null 2>&1 || echo "deb-test: cleanup: dpkg --purge $PKG failed" >&2
  fi
  installed_packages >"$TMP/packages-after"
  mapfile -t extra < <(comm -13 "$TMP/packages-before" "$TMP/packages-after")
  if ((${#extra[@]})); then
    echo "deb-test: cleanup: removing packages the install pulled in: ${extra[*]}"
    "${APT[@]}" purge "${extra[@]}" >/dev/null 2>&1
  fi
  dpkg-statoverride --list "$CONF" >/dev/null 2>&1 && dpkg-statoverride --remove "$CONF"
  if [ "$user_existed" = 0 ] && getent passwd braid >/dev/null; then userdel braid 2>/dev/null; fi
  if [ "$group_existed" = 0 ] && getent group braid >/dev/null; then groupdel braid 2>/dev/null; fi
  rm -rf "$TMP"
  [ $rc -eq 0 ] || echo "deb-test: FAIL (exit $rc) after $(($(date +%s) - T0)) s; machine restored" >&2
  exit $rc
}
trap cleanup EXIT

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)

# --- build -----------------------------------------------------------------
step "make deb (release build)"
bash scripts/deb.sh amd64 | tee "$TMP/deb.log"
DEB=$(tail -n 1 "$TMP/deb.log")
[ -f "$DEB" ] || fail "no package built"
size=$(du -h "$DEB" | cut -f1)
ok "built $DEB ($size)"

# --- contents, Depends -------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$TMP/contents"
need=(/usr/bin/braid-agent "$CONF" "$UNITDIR/braid-agent.service" "$UNITDIR/braid-receiver@.service"
  /usr/share/doc/braid/changelog.Debian.gz /usr/share/doc/braid/copyright /usr/share/doc/braid/README.md
  /usr/share/man/man1/braid-agent.1.gz /usr/share/doc/braid/examples/receiver.conf)
mapfile -t plugins < <(bash scripts/deb.sh --list-plugins)
for f in "${plugins[@]}"; do need+=("$PLUGINDIR/$f"); done
for f in "${need[@]}"; do grep -qx "$f" "$TMP/contents" || fail "package lacks $f"; done
ok "contents: ${#need[@]} required files, plugins ${plugins[*]} in $PLUGINDIR"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx "$CONF" || fail "$CONF is not a conffile"
ok "$CONF is a conffile"

depends=$(dpkg-deb -f "$DEB" Depends)
for p in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav; do
  [[ ", $depends," == *", $p "* ]] || fail "Depends lacks $p: $depends"
done
mkdir -p "$TMP/shlibs/debian" && touch "$TMP/shlibs/debian/control"
dpkg-deb -x "$DEB" "$TMP/shlibs/root"
elfs=()
for f in "$TMP/shlibs/root/usr/bin/braid-agent" "$TMP/shlibs/root$PLUGINDIR"/*.so; do elfs+=(-e "$f"); done
shlibs=$(cd "$TMP/shlibs" && dpkg-shlibdeps -O "${elfs[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || fail "dpkg-shlibdeps found nothing"
IFS=',' read -ra linked <<<"$shlibs"
for dep in "${linked[@]}"; do
  name=$(echo "$dep" | awk '{print $1}')
  [[ ", $depends," == *", $name "* || ", $depends," == *", $name,"* ]] || fail "Depends lacks $name, which the binaries link ($shlibs)"
done
ok "Depends covers the linked libraries ($shlibs) and the GStreamer plugin sets"

# --- lintian -------------------------------------------------------------------
step "lintian"
lintian --info --display-info --show-overrides "$DEB" >"$TMP/lintian.txt" 2>&1 || true
grep -E '^[EWIO]:' "$TMP/lintian.txt" | sed 's/^/deb-test:   lintian /' || true
if grep -q '^E:' "$TMP/lintian.txt"; then fail "lintian errors (above)"; fi
if grep -q '^W:' "$TMP/lintian.txt"; then fail "lintian warnings not in packaging/lintian-overrides (above)"; fi
ok "lintian: no errors, no warnings outside packaging/lintian-overrides ($(grep -c '^O:' "$TMP/lintian.txt" || true) overridden)"

# --- install --------------------------------------------------------------------
step "apt-get install ./$(basename "$DEB")"
"${APT[@]}" install "./$DEB" >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log"; fail "apt-get install"; }
dpkg-query -W -f='${Status} ${Version}' "$PKG" | grep -q "install ok installed $version-1" || fail "not installed"
ok "installed $(dpkg-query -W -f='${Version}' "$PKG")"

[ "$(braid-agent --version)" = "braid-agent $version" ] || fail "braid-agent --version: $(braid-agent --version)"
ok "braid-agent --version: $(braid-agent --version)"

export GST_REGISTRY="$TMP/registry.bin"   # a fresh registry: no cached plugin list
for el in ristbondsink ristbondsrc; do
  env -u GST_PLUGIN_PATH -u GST_PLUGIN_SYSTEM_PATH gst-inspect-1.0 "$el" >"$TMP/inspect-$el.txt" 2>&1 \
    || { cat "$TMP/inspect-$el.txt"; fail "gst-inspect-1.0 $el without GST_PLUGIN_PATH"; }
  # (/lib is /usr/lib on Debian 12: compare resolved paths.)
  from=$(sed -n 's/^ *Filename *//p' "$TMP/inspect-$el.txt")
  [ "$(realpath "$from")" = "$(realpath "$PLUGINDIR/libgstristbond.so")" ] || fail "$el loaded from $from, not $PLUGINDIR"
done
ok "gst-inspect-1.0 ristbondsink/ristbondsrc with no GST_PLUGIN_PATH: $PLUGINDIR/libgstristbond.so"
for f in "${plugins[@]}"; do
  gst-inspect-1.0 "$PLUGINDIR/$f" >"$TMP/inspect-$f.txt" 2>&1 || { cat "$TMP/inspect-$f.txt"; fail "gst-inspect-1.0 $PLUGINDIR/$f"; }
done
if [[ " ${plugins[*]} " == *" libgstfallbackswitch.so "* ]]; then
  env -u GST_PLUGIN_PATH gst-inspect-1.0 fallbackswitch >/dev/null 2>&1 || fail "fallbackswitch not found without GST_PLUGIN_PATH"
fi
ok "every packaged plugin loads: ${plugins[*]}"

# --- units ------------------------------------------------------------------------
ln -s "$UNITDIR/braid-receiver@.service" "$TMP/braid-receiver@verify.service"
for unit in "$UNITDIR/braid-agent.service" "$TMP/braid-receiver@verify.service"; do
  out=$(systemd-analyze verify "$unit" 2>&1 | grep -i 'braid' || true)
  [ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
done
ok "systemd-analyze verify: braid-agent.service, braid-receiver@.service clean"
exposure=$(systemd-analyze security --offline=true "$UNITDIR/braid-agent.service" 2>/dev/null \
  | sed -n 's/.*Overall exposure level for braid-agent.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no exposure figure from systemd-analyze security"
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' || fail "exposure $exposure > $MAX_EXPOSURE"
rx_exposure=$(systemd-analyze security --offline=true "$TMP/braid-receiver@verify.service" 2>/dev/null \
  | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
ok "systemd-analyze security --offline=true: braid-agent.service $exposure (<= $MAX_EXPOSURE), braid-receiver@ $rx_exposure"
[ -L /etc/systemd/system/multi-user.target.wants/braid-agent.service ] || fail "braid-agent.service not enabled"
ok "braid-agent.service enabled"

# --- user, permissions ---------------------------------------------------------------
groups=" $(id -nG braid) "
[[ "$groups" == *" video "* && "$groups" == *" dialout "* ]] || fail "braid groups: $groups"
[ "$(stat -c '%U:%G %a' "$STATE")" = "braid:braid 700" ] || fail "$STATE: $(stat -c '%U:%G %a' "$STATE")"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:braid 640" ] || fail "$CONF: $(stat -c '%U:%G %a' "$CONF")"
ok "user braid in video+dialout; $STATE braid:braid 0700; $CONF root:braid 0640"

as_braid() { setpriv --reuid=braid --regid=braid --init-groups --inh-caps=-all -- "$@"; }
if as_braid braid-agent check-config >"$TMP/check.out" 2>&1; then fail "check-config accepted the empty template"; fi
grep -q "config file $CONF, line [0-9]*: key \`control_plane.url\`: required key is missing; fix: " "$TMP/check.out" \
  || { cat "$TMP/check.out"; fail "check-config on the template"; }
install -m 0600 "$CONF" "$TMP/secret.conf"
if as_braid braid-agent check-config --config "$TMP/secret.conf" >"$TMP/check2.out" 2>&1; then fail "read a 0600 root file"; fi
grep -q "cannot read: Permission denied.*fix: make it readable" "$TMP/check2.out" || { cat "$TMP/check2.out"; fail "unreadable message"; }
ok "check-config as braid: template -> line + fix; unreadable file -> fix"

# --- a real stream with the installed agent and plugins ---------------------------------
step "installed agent as user braid (CAP_NET_RAW only) streams to a devplane"
port=$((20000 + RANDOM % 5000))
mkdir -p "$TMP/run" && chown braid:braid "$TMP/run"
braid-agent devplane --listen "127.0.0.1:$port" --token enr_debtest --pin-file "$TMP/pin" \
  --ports 26000-26998 --links 2 --bitrate-kbps 600 --resolution 320x240 --latency-ms 500 \
  --stream-duration-s 4 --exit-after-stream --out "$TMP/out.ts" >"$TMP/devplane.out" 2>"$TMP/devplane.log" &
dp=$!
pids+=("$dp")
for _ in $(seq 1 200); do [ -s "$TMP/pin" ] && break; sleep 0.1; done
[ -s "$TMP/pin" ] || fail "devplane did not start: $(tail -n 5 "$TMP/devplane.log")"
# The technician's edit of the installed conffile: URL, pinned TLS, token.
sed -i -e "s|^#url = .*|url = \"wss://127.0.0.1:$port/agent/ws\"|" \
  -e 's|^#enrollment_token = .*|enrollment_token = "enr_debtest"|' \
  -e 's|^#mode = .*|mode = "pinned"|' \
  -e "s|^#pin_sha256 = .*|pin_sha256 = \"$(cat "$TMP/pin")\"|" "$CONF"
as_braid braid-agent check-config | grep -q "^config OK: $CONF: control plane wss://127.0.0.1:$port/agent/ws (TLS pinned), enroll" \
  || fail "check-config on the filled-in conffile"
setpriv --reuid=braid --regid=braid --init-groups --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw \
  --bounding-set=-all,+net_raw -- env HOME="$STATE" GST_REGISTRY="$TMP/run/registry.bin" \
  XDG_CACHE_HOME="$TMP/run" braid-agent run --config "$CONF" >"$TMP/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
status=0
timeout 120 tail --pid="$dp" -f /dev/null || status=$?
wait "$dp" || status=$?
kill -TERM "$agent" 2>/dev/null || true
wait "$agent" || true
summary=$(grep '^demo:' "$TMP/devplane.out" | tail -n 1 || true)
[[ "$summary" == "demo: OK "* ]] || { tail -n 20 "$TMP/devplane.log" "$TMP/agent.log" >&2; fail "stream: ${summary:-no summary} (exit $status)"; }
[ -f "$STATE/credentials.json" ] || fail "no $STATE/credentials.json after enrollment"
[ "$(stat -c '%U %a' "$STATE/credentials.json")" = "braid 600" ] || fail "credentials.json: $(stat -c '%U %a' "$STATE/credentials.json")"
ok "stream through the installed plugins: $summary; credentials in $STATE (braid, 0600)"

# --- upgrades keep the edited conffile and the state ---------------------------------------
step "upgrade over itself, then to revision 2"
conf_sum=$(md5sum <"$CONF")
"${APT[@]}" install --reinstall "./$DEB" >"$TMP/reinstall.log" 2>&1 || { cat "$TMP/reinstall.log"; fail "reinstall"; }
[ "$(md5sum <"$CONF")" = "$conf_sum" ] || fail "reinstall changed the edited $CONF"
DEB_REVISION=2 DEB_FAST=1 bash scripts/deb.sh amd64 >"$TMP/deb2.log" 2>&1 || { cat "$TMP/deb2.log"; fail "building revision 2"; }
DEB2=$(tail -n 1 "$TMP/deb2.log")
"${APT[@]}" install "./$DEB2" >"$TMP/upgrade.log" 2>&1 || { cat "$TMP/upgrade.log"; fail "upgrade to $DEB2"; }
[ "$(dpkg-query -W -f='${Version}' "$PKG")" = "$version-2" ] || fail "upgrade did not install $version-2"
[ "$(md5sum <"$CONF")" = "$conf_sum" ] || fail "upgrade changed the edited $CONF"
ls /etc/braid/agent.conf.dpkg-* >/dev/null 2>&1 && fail "upgrade left $(ls /etc/braid/agent.conf.dpkg-*)"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:braid 640" ] || fail "$CONF after upgrade: $(stat -c '%U:%G %a' "$CONF")"
[ -f "$STATE/credentials.json" ] || fail "upgrade lost $STATE/credentials.json"
ok "reinstall and upgrade to $version-2 keep the edited $CONF (root:braid 0640) and $STATE"
rm -f "$DEB2"

# --- remove, purge ---------------------------------------------------------------------------
step "remove, purge"
"${APT[@]}" remove "$PKG" >"$TMP/remove.log" 2>&1 || { cat "$TMP/remove.log"; fail "remove"; }
[ ! -e /usr/bin/braid-agent ] && [ ! -e "$PLUGINDIR/libgstristbond.so" ] && [ ! -e "$UNITDIR/braid-agent.service" ] \
  || fail "remove left program files"
[ -f "$CONF" ] && [ -f "$STATE/credentials.json" ] || fail "remove must keep the conffile and the state"
ok "remove: program gone, conffile and state kept"
"${APT[@]}" purge "$PKG" >"$TMP/purge.log" 2>&1 || { cat "$TMP/purge.log"; fail "purge"; }
[ ! -e "$STATE" ] || fail "purge left $STATE"
[ ! -e "$CONF" ] || fail "purge left $CONF"
dpkg-statoverride --list "$CONF" >/dev/null 2>&1 && fail "purge left the stat override of $CONF"
[ ! -e /etc/systemd/system/multi-user.target.wants/braid-agent.service ] || fail "purge left the unit enabled"
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "installed\|config-files" && fail "still known to dpkg"
ok "purge: $STATE, $CONF, stat override and unit links gone"

# --- arm64 --------------------------------------------------------------------------------------
SYSROOT="${BRAID_ARM64_SYSROOT:-/work/sysroot-arm64}"
arm64="skipped"
if [ "${BRAID_DEB_ARM64:-1}" = 0 ]; then
  echo "deb-test: SKIP arm64: BRAID_DEB_ARM64=0"
elif [ ! -f "$SYSROOT/.braid-sysroot-ok" ]; then
  echo "deb-test: SKIP arm64: no arm64 sysroot at $SYSROOT (build it with scripts/arm64-sysroot.sh, ~5 min; packaging/README.md)"
elif ! command -v qemu-aarch64-static >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  echo "deb-test: SKIP arm64: qemu-aarch64-static or aarch64-linux-gnu-gcc missing (scripts/arm64-sysroot.sh installs them)"
else
  step "make deb ARCH=arm64 (cross release build)"
  bash scripts/deb.sh arm64 | tee "$TMP/deb-arm64.log"
  DEBA=$(tail -n 1 "$TMP/deb-arm64.log")
  [ "$(dpkg-deb -f "$DEBA" Architecture)" = arm64 ] || fail "$DEBA is not arm64"
  dpkg-deb -x "$DEBA" "$TMP/arm64"
  APLUG="$TMP/arm64/usr/lib/aarch64-linux-gnu/gstreamer-1.0"
  for f in "$TMP/arm64/usr/bin/braid-agent" "$APLUG/libgstristbond.so"; do
    readelf -h "$f" | grep -q 'Machine:.*AArch64' || fail "$f is not AArch64"
  done
  ok "arm64 package $(basename "$DEBA") ($(du -h "$DEBA" | cut -f1)): AArch64 agent, plugins in /usr/lib/aarch64-linux-gnu/gstreamer-1.0"
  v=$(qemu-aarch64-static -L "$SYSROOT" "$TMP/arm64/usr/bin/braid-agent" --version)
  [ "$v" = "braid-agent $version" ] || fail "arm64 braid-agent --version: $v"
  qemu-aarch64-static -L "$SYSROOT" "$TMP/arm64/usr/bin/braid-agent" check-config --config packaging/agent.conf \
    >"$TMP/arm64-check.out" 2>&1 && fail "arm64 check-config accepted the template"
  grep -q "required key is missing; fix:" "$TMP/arm64-check.out" || { cat "$TMP/arm64-check.out"; fail "arm64 check-config"; }
  GST_REGISTRY_FORK=no GST_REGISTRY="$TMP/registry-arm64.bin" GST_PLUGIN_PATH="$APLUG" \
    qemu-aarch64-static -L "$SYSROOT" "$SYSROOT/usr/bin/gst-inspect-1.0" ristbondsink >"$TMP/arm64-inspect.txt" 2>&1 \
    || { tail -n 20 "$TMP/arm64-inspect.txt"; fail "arm64 gst-inspect-1.0 ristbondsink"; }
  grep -q "Filename.*libgstristbond.so" "$TMP/arm64-inspect.txt" || fail "arm64 gst-inspect did not load the packaged plugin"
  # The arm64 elements move data: a TS made here goes through the packaged
  # ristbondsink and ristbondsrc (two arm64 gst-launch-1.0 under qemu, two
  # bonded loopback links) and must come out byte for byte.
  gst-launch-1.0 -q videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! x264enc tune=zerolatency bitrate=500 key-int-max=30 ! h264parse ! mpegtsmux alignment=7 \
    ! filesink location="$TMP/arm64-in.ts"
  aport=$((27000 + 4 * (RANDOM % 200)))
  alinks="rist://127.0.0.1:$aport,rist://127.0.0.1:$((aport + 2))"
  qgst() { GST_REGISTRY_FORK=no GST_PLUGIN_PATH="$APLUG" timeout 120 \
    qemu-aarch64-static -L "$SYSROOT" "$SYSROOT/usr/bin/gst-launch-1.0" -q "$@"; }
  GST_REGISTRY="$TMP/registry-arm64-rx.bin" qgst ristbondsrc links="${alinks//rist:\/\//rist://@}" latency=300 \
    idle-timeout=2000 ! filesink location="$TMP/arm64-out.ts" >"$TMP/arm64-rx.log" 2>&1 &
  arx=$!
  pids+=("$arx")
  sleep 3
  GST_REGISTRY="$TMP/registry-arm64-tx.bin" qgst filesrc location="$TMP/arm64-in.ts" blocksize=1316 \
    ! ristbondsink links="$alinks" latency=300 sync=false >"$TMP/arm64-tx.log" 2>&1 \
    || { cat "$TMP/arm64-tx.log"; fail "arm64 ristbondsink pipeline"; }
  wait "$arx" || { cat "$TMP/arm64-rx.log"; fail "arm64 ristbondsrc pipeline"; }
  cmp -s "$TMP/arm64-in.ts" "$TMP/arm64-out.ts" \
    || fail "arm64 round trip: $(stat -c %s "$TMP/arm64-in.ts") bytes in, $(stat -c %s "$TMP/arm64-out.ts" 2>/dev/null || echo 0) out"
  ok "arm64 ristbondsink -> 2 links -> ristbondsrc under qemu: $(stat -c %s "$TMP/arm64-in.ts") bytes of TS, identical"
  ok "qemu-aarch64-static: $v; check-config; gst-inspect-1.0 ristbondsink (arm64 GStreamer $(sed -n 's/^Version: //p' "$SYSROOT/usr/lib/aarch64-linux-gnu/pkgconfig/gstreamer-1.0.pc"))"
  arm64="ok"
fi

echo "deb-test: OK $checks checks, amd64 package $size, exposure $exposure, arm64 $arm64, $(($(date +%s) - T0)) s"
