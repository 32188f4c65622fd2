#!/usr/bin/env bash
# The package test (packaging/README.md "The test"), one step of `make test`; run
# as root on Debian 12. Builds the amd64 .deb, lints it, installs it with apt-get,
# checks what it installed (plugins visible with no GST_PLUGIN_PATH, units,
# hardening figure, user and permissions, a real bonded stream by the installed
# agent as user braid, an agent.update of the installed agent run with the
# unit's own ExecStartPre/ExecStart lines), upgrades it over itself and to a
# higher revision (an edited conffile and the state survive, a remote update is
# superseded), removes and purges it (state deleted).
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
  [ -s "$TMP/unit.pid" ] && kill "$(cat "$TMP/unit.pid")" 2>/dev/null
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
GUARD_LINE="ExecStartPre=-$STATE/bin/braid-agent.prev update-guard --config $CONF"
grep -qxF "$GUARD_LINE" "$UNITDIR/braid-agent.service" || fail "braid-agent.service lacks '$GUARD_LINE'"
# The guards need 4 starts of a crashing update (docs/protocol.md agent.update)
# plus the start that installed it, within the start limit.
burst=$(sed -n 's/^StartLimitBurst=//p' "$UNITDIR/braid-agent.service")
[ "${burst:-5}" -ge 6 ] || fail "StartLimitBurst=$burst leaves no room for the update guard's 4 starts"
# The exec of an update in /var/lib/braid under SystemCallFilter=@system-service
# ~@privileged: execve is in @default (part of @system-service), not in @privileged.
systemd-analyze syscall-filter @system-service | grep -qx '    @default' || fail "@system-service lacks @default"
systemd-analyze syscall-filter @default | grep -qx '    execve' || fail "@default lacks execve"
if systemd-analyze syscall-filter @privileged | grep -Eqx '    (execve|execveat|@default|@process)'; then
  fail "~@privileged would deny execve"
fi
ok "unit: '$GUARD_LINE'; StartLimitBurst=${burst:-default}; execve allowed by its SystemCallFilter"
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
if as_braid touch /usr/bin/braid-agent.new 2>/dev/null; then rm -f /usr/bin/braid-agent.new; fail "user braid can write /usr/bin"; fi
as_braid sh -c "umask 0077 && mkdir -p '$STATE/bin' && : >'$STATE/bin/.probe' && rm '$STATE/bin/.probe' && rmdir '$STATE/bin'" \
  || fail "user braid cannot write $STATE/bin (where agent.update installs)"
ok "user braid can write $STATE/bin, not /usr/bin"

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

# --- agent.update of the installed agent -------------------------------------------------
# The unit's own ExecStartPre and ExecStart lines, as user braid with only
# CAP_NET_RAW (ambient), no_new_privs and UMask 0077, restarted on exit 75 like
# Restart=always; the update is the installed binary with bytes appended (same
# program, another SHA-256), served over https with a pinned certificate
# ([update.tls]); a devplane sends agent.update.
step "agent.update of the installed agent (the unit's ExecStartPre/ExecStart as braid)"
wait_for() { # FILE PATTERN SECONDS
  for _ in $(seq 1 $(($3 * 5))); do grep -q "$2" "$1" && return 0; sleep 0.2; done
  return 1
}
unit_pre=$(sed -n 's/^ExecStartPre=-//p' "$UNITDIR/braid-agent.service")
unit_start=$(sed -n 's/^ExecStart=//p' "$UNITDIR/braid-agent.service")
mkdir -p "$TMP/www"
cp /usr/bin/braid-agent "$TMP/www/braid-agent-next"
printf '\nbraid-deb-test-update\n' >>"$TMP/www/braid-agent-next"
next_sha=$(sha256sum "$TMP/www/braid-agent-next" | cut -d' ' -f1)
usr_sha=$(sha256sum /usr/bin/braid-agent | cut -d' ' -f1)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -keyout "$TMP/www.key" -out "$TMP/www.crt" >/dev/null 2>&1 || fail "openssl req"
www_pin=$(openssl x509 -noout -fingerprint -sha256 -in "$TMP/www.crt" | cut -d= -f2)
wport=$((25000 + RANDOM % 900))
python3 - "$TMP/www" "$wport" "$TMP/www.crt" "$TMP/www.key" >"$TMP/www.log" 2>&1 <<'PY' &
import functools, http.server, ssl, sys
root, port, crt, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print("https: listening", flush=True)
httpd.serve_forever()
PY
pids+=("$!")
wait_for "$TMP/www.log" "https: listening" 30 || fail "the https server did not start: $(cat "$TMP/www.log")"
# A new devplane (console on a fifo): it knows no sender, so the agent enrolls again.
rm -f "$STATE/credentials.json"
port2=$((20000 + RANDOM % 5000))
mkfifo "$TMP/dp2.in"
braid-agent devplane --listen "127.0.0.1:$port2" --token enr_debtest --pin-file "$TMP/pin2" \
  --ports 26000-26998 <"$TMP/dp2.in" >"$TMP/dp2.out" 2>"$TMP/dp2.log" &
pids+=("$!")
exec 7>"$TMP/dp2.in"
for _ in $(seq 1 200); do [ -s "$TMP/pin2" ] && break; sleep 0.1; done
[ -s "$TMP/pin2" ] || fail "second devplane did not start: $(tail -n 5 "$TMP/dp2.log")"
sed -i -e "s|^url = .*|url = \"wss://127.0.0.1:$port2/agent/ws\"|" \
  -e "s|^pin_sha256 = .*|pin_sha256 = \"$(cat "$TMP/pin2")\"|" "$CONF"
printf '\n[update.tls]\nmode = "pinned"\npin_sha256 = "%s"\n' "$www_pin" >>"$CONF"
as_braid braid-agent check-config >/dev/null || fail "check-config with [update.tls]"
(
  umask 0077
  for _ in 1 2 3 4 5 6; do
    # ExecStartPre=-…: skipped when .prev is absent, its failure ignored.
    if [ -e "${unit_pre%% *}" ]; then
      # shellcheck disable=SC2086
      setpriv --reuid=braid --regid=braid --init-groups --no-new-privs --inh-caps=-all,+net_raw \
        --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw -- env HOME="$STATE" BRAID_LOG=info \
        $unit_pre >>"$TMP/unit.log" 2>&1 || true
    fi
    # shellcheck disable=SC2086
    setpriv --reuid=braid --regid=braid --init-groups --no-new-privs --inh-caps=-all,+net_raw \
      --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw -- env HOME="$STATE" BRAID_LOG=info \
      GST_REGISTRY="$TMP/run/registry.bin" XDG_CACHE_HOME="$TMP/run" $unit_start >>"$TMP/unit.log" 2>&1 &
    echo "$!" >"$TMP/unit.pid"
    rc=0
    wait "$!" || rc=$?
    echo "unit: main process exited $rc" >>"$TMP/unit.log"
    [ "$rc" = 75 ] || break
    sleep 1
  done
) &
unit=$!
pids+=("$unit")
wait_for "$TMP/dp2.out" "enrolled" 60 || { tail -n 20 "$TMP/unit.log" "$TMP/dp2.log" >&2; fail "the unit's agent did not enroll"; }
echo "update https://127.0.0.1:$wport/braid-agent-next $next_sha" >&7
wait_for "$TMP/dp2.out" "agent.update.response" 120 || { tail -n 30 "$TMP/unit.log" >&2; fail "no answer to agent.update"; }
grep "agent.update.response" "$TMP/dp2.out" | grep -q "\"success\":true" \
  || fail "agent.update refused: $(grep "agent.update.response" "$TMP/dp2.out")"
wait_for "$TMP/dp2.out" "Agent updated to" 90 \
  || { tail -n 30 "$TMP/unit.log" "$TMP/dp2.out" "$TMP/www.log" >&2; fail "no 'Agent updated' event after agent.update"; }
apid=$(cat "$TMP/unit.pid")
[ "$(readlink "/proc/$apid/exe")" = "$STATE/bin/braid-agent" ] || fail "the running agent is $(readlink "/proc/$apid/exe"), not the update"
grep -q "^CapAmb:.*0000000000002000$" "/proc/$apid/status" || fail "the update lost CAP_NET_RAW: $(grep ^Cap "/proc/$apid/status")"
grep -q "^NoNewPrivs:.*1$" "/proc/$apid/status" || fail "no_new_privs not set on the update"
[ "$(sha256sum "$STATE/bin/braid-agent" | cut -d' ' -f1)" = "$next_sha" ] || fail "$STATE/bin/braid-agent is not the update"
[ "$(sha256sum "$STATE/bin/braid-agent.prev" | cut -d' ' -f1)" = "$usr_sha" ] || fail ".prev is not the packaged binary"
[ "$(sha256sum /usr/bin/braid-agent | cut -d' ' -f1)" = "$usr_sha" ] || fail "/usr/bin/braid-agent changed"
[ "$(stat -c '%U %a' "$STATE/bin")" = "braid 700" ] && [ "$(stat -c '%U %a' "$STATE/bin/braid-agent")" = "braid 700" ] \
  || fail "update files: $(stat -c '%n %U %a' "$STATE/bin" "$STATE/bin/braid-agent")"
[ ! -e "$STATE/updates/pending.json" ] || fail "the update marker is still there after the login"
[ "$(grep -c "starting the installed update" "$TMP/unit.log")" = 1 ] || { cat "$TMP/unit.log"; fail "the launcher did not exec the update exactly once"; }
ok "agent.update of the installed agent: $STATE/bin/braid-agent ($next_sha) exec'd by /usr/bin/braid-agent as braid (CAP_NET_RAW kept, no_new_privs), committed at login; /usr/bin untouched"
kill -TERM "$apid"
timeout 30 tail --pid="$unit" -f /dev/null || fail "the unit's agent did not stop on SIGTERM"
rm -f "$TMP/unit.pid"
echo quit >&7
exec 7>&-
cp -a "$STATE/bin" "$TMP/update-files"

# --- upgrades keep the edited conffile and the state, and supersede a remote update --------
step "upgrade over itself, then to revision 2"
conf_sum=$(md5sum <"$CONF")
"${APT[@]}" install --reinstall "./$DEB" >"$TMP/reinstall.log" 2>&1 || { cat "$TMP/reinstall.log"; fail "reinstall"; }
[ "$(md5sum <"$CONF")" = "$conf_sum" ] || fail "reinstall changed the edited $CONF"
[ ! -e "$STATE/bin/braid-agent" ] && [ ! -e "$STATE/bin/braid-agent.prev" ] && [ ! -e "$STATE/bin/braid-agent.base" ] \
  || fail "reinstall left the remote update: $(ls -A "$STATE/bin")"
cp -a "$TMP/update-files/." "$STATE/bin/"
DEB_REVISION=2 DEB_FAST=1 bash scripts/deb.sh amd64 >"$TMP/deb2.log" 2>&1 || { cat "$TMP/deb2.log"; fail "building revision 2"; }
DEB2=$(tail -n 1 "$TMP/deb2.log")
"${APT[@]}" install "./$DEB2" >"$TMP/upgrade.log" 2>&1 || { cat "$TMP/upgrade.log"; fail "upgrade to $DEB2"; }
[ "$(dpkg-query -W -f='${Version}' "$PKG")" = "$version-2" ] || fail "upgrade did not install $version-2"
[ "$(md5sum <"$CONF")" = "$conf_sum" ] || fail "upgrade changed the edited $CONF"
ls /etc/braid/agent.conf.dpkg-* >/dev/null 2>&1 && fail "upgrade left $(ls /etc/braid/agent.conf.dpkg-*)"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:braid 640" ] || fail "$CONF after upgrade: $(stat -c '%U:%G %a' "$CONF")"
[ -f "$STATE/credentials.json" ] || fail "upgrade lost $STATE/credentials.json"
[ ! -e "$STATE/bin/braid-agent" ] || fail "upgrade to $version-2 left the remote update $STATE/bin/braid-agent"
ok "reinstall and upgrade to $version-2 keep the edited $CONF (root:braid 0640) and $STATE, and supersede the remote update"
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
