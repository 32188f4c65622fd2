#!/usr/bin/env bash
# Agent idle footprint (docs/benchmarks.md "Agent idle footprint"): the agent logged
# in to the development control plane, no stream, status collection running
# (device.status every 10 s, health every 15 s, one saved clip in the media folder)
# with three modems on a private system
# bus (python-dbusmock's ModemManager, each modem's Signal figures updated every 5 s
# as ModemManager's signal refresh does). After a warm-up, RSS is sampled from
# /proc/PID/status every second and CPU is utime+stime over the window, as percent of
# one core. Prints one result line and the largest mappings (what the RSS is made of).
#
#   scripts/bench-idle.sh               # 180 s window, release build
#   BENCH_IDLE_S=60 BENCH_PROFILE=debug scripts/bench-idle.sh
#   scripts/bench-idle.sh --write       # also update the table in docs/benchmarks.md
#
# Needs `make setup` (dbus-daemon, the python-dbusmock venv). Long: not part of
# `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

WINDOW="${BENCH_IDLE_S:-180}"
WARMUP="${BENCH_WARMUP_S:-20}"
PROFILE="${BENCH_PROFILE:-release}"
PORT="${BENCH_PORT:-18543}"
WRITE=0
[ "${1:-}" = "--write" ] && WRITE=1
OUT=target/bench-idle
PY="${BRAID_DBUSMOCK_PYTHON:-target/dbusmock-venv/bin/python}"

if [ "$PROFILE" = release ]; then
  cargo build --locked --release -p braid-agent --bin braid-agent 2>&1 | tail -n 1
  BIN=target/release/braid-agent
else
  cargo build --locked -p braid-agent --bin braid-agent 2>&1 | tail -n 1
  BIN=target/debug/braid-agent
fi
[ -x "$PY" ] || { echo "bench-idle: $PY missing: run make setup" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/state" "$OUT/media"
# One saved clip, so saved_media probing (GStreamer discoverer) is part of the figure
# (BENCH_CLIP=0: an empty media folder).
[ "${BENCH_CLIP:-1}" = 0 ] || gst-launch-1.0 -q videotestsrc num-buffers=150 ! video/x-raw,format=I420,width=640,height=360 \
  ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location="$OUT/media/clip.mp4" >/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Private system bus with ModemManager's mock and three modems.
cat >"$OUT/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=$PWD/$OUT/bus.sock</listen>
<auth>EXTERNAL</auth><policy context="default"><allow user="*"/><allow own="*"/>
<allow send_destination="*"/><allow receive_sender="*"/></policy></busconfig>
CONF
dbus-daemon --config-file="$OUT/bus.conf" --nofork --nopidfile --print-address=1 >"$OUT/bus.addr" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$OUT/bus.addr" ] && break; sleep 0.1; done
export DBUS_SYSTEM_BUS_ADDRESS="$(head -n 1 "$OUT/bus.addr")"
"$PY" -m dbusmock --system -t modemmanager >/dev/null 2>&1 &
pids+=($!)
"$PY" - "$((WARMUP + WINDOW + 30))" >"$OUT/modems.log" 2>&1 <<'PYTHON' &
import sys, time, random
import dbus
bus = dbus.SystemBus()
for _ in range(100):
    if bus.name_has_owner("org.freedesktop.ModemManager1"):
        break
    time.sleep(0.1)
MM = "/org/freedesktop/ModemManager1"
M, G, S, B = ("org.freedesktop.ModemManager1.Modem", "org.freedesktop.ModemManager1.Modem.Modem3gpp",
              "org.freedesktop.ModemManager1.Modem.Signal", "org.freedesktop.ModemManager1.Bearer")
mock = lambda path: dbus.Interface(bus.get_object("org.freedesktop.ModemManager1", path), "org.freedesktop.DBus.Mock")
def lte(i):
    return dbus.Dictionary({"rssi": dbus.Double(-60.0 - i - random.random() * 5), "rsrp": dbus.Double(-95.0 - random.random() * 6),
                            "rsrq": dbus.Double(-10.0 - random.random() * 2), "snr": dbus.Double(12.0 + random.random() * 3)}, signature="sv")
paths = []
for i in range(3):
    path, bearer = f"{MM}/Modems/{i}", f"{MM}/Bearer/{i}"
    mock(MM).AddObject(bearer, B, {"Interface": f"wwan{i}", "Connected": True,
        "Ip4Config": dbus.Dictionary({"address": f"10.{i}.0.2", "prefix": dbus.UInt32(30)}, signature="sv")}, [])
    props = {"State": dbus.Int32(11), "StateFailedReason": dbus.UInt32(0), "AccessTechnologies": dbus.UInt32(1 << 14),
             "SignalQuality": dbus.Struct((dbus.UInt32(70), True), signature="ub"), "Bearers": dbus.Array([dbus.ObjectPath(bearer)], signature="o"),
             "Ports": dbus.Array([(f"wwan{i}", dbus.UInt32(2))], signature="(su)"), "Manufacturer": "Quectel", "Model": "EM12-G",
             "EquipmentIdentifier": f"49015420323751{i}"}
    props = dbus.Dictionary(props, signature="sv")
    mock(MM).AddObject(path, M, props, [])
    gpp = dbus.Dictionary({"Imei": f"49015420323751{i}", "OperatorName": "Operator", "OperatorCode": "00101",
                           "RegistrationState": dbus.UInt32(1)}, signature="sv")
    mock(path).AddProperties(G, gpp)
    sig = {"Rate": dbus.UInt32(5), "Lte": lte(i), "Nr5g": dbus.Dictionary({}, signature="sv"),
           "Umts": dbus.Dictionary({}, signature="sv"), "Gsm": dbus.Dictionary({}, signature="sv")}
    sig = dbus.Dictionary(sig, signature="sv")
    mock(path).AddProperties(S, sig)
    mock(MM).EmitSignal("org.freedesktop.DBus.ObjectManager", "InterfacesAdded", "oa{sa{sv}}",
                        [dbus.ObjectPath(path), dbus.Dictionary({M: props, G: gpp, S: sig}, signature="sa{sv}")])
    paths.append(path)
print("modems added", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    time.sleep(5)
    for i, path in enumerate(paths):
        mock(path).UpdateProperties(S, {"Lte": lte(i)})
        mock(path).UpdateProperties(M, {"SignalQuality": dbus.Struct((dbus.UInt32(65 + random.randint(0, 9)), True), signature="ub")})
PYTHON
pids+=($!)

# Control plane (console mode: no stream is started) and the agent.
# Its console reads stdin: a FIFO this script holds open (closed when it exits).
mkfifo "$OUT/console"
exec 3<>"$OUT/console"
"$BIN" devplane --listen "127.0.0.1:$PORT" --token enr_bench --pin-file "$OUT/pin" \
  --out "$OUT/out.ts" <"$OUT/console" >"$OUT/devplane.out" 2>"$OUT/devplane.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$OUT/pin" ] && break; sleep 0.1; done
[ -s "$OUT/pin" ] || { echo "bench-idle: devplane did not start" >&2; exit 1; }
cat >"$OUT/agent.conf" <<CONF
[control_plane]
url = "wss://127.0.0.1:$PORT/agent/ws"
enrollment_token = "enr_bench"
[control_plane.tls]
mode = "pinned"
pin_sha256 = "$(cat "$OUT/pin")"
[agent]
state_dir = "$OUT/state"
media_dir = "$OUT/media"
status_interval_s = 10
CONF
BRAID_LOG=info "$BIN" run --config "$OUT/agent.conf" >"$OUT/agent.log" 2>&1 &
agent=$!
pids+=("$agent")

sleep "$WARMUP"
grep -q "logged in to control plane" "$OUT/agent.log" || { echo "bench-idle: the agent did not log in" >&2; tail "$OUT/agent.log" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
rss=()
for _ in $(seq 1 "$WINDOW"); do
  rss+=("$(awk '/^VmRSS:/ {print $2}' "/proc/$agent/status")")
  sleep 1
done
c1=$(cpu); t1=$(date +%s.%N)
threads=$(awk '/^Threads:/ {print $2}' "/proc/$agent/status")
added=$(grep -c "modem added" "$OUT/agent.log" || true)
[ "$added" -ge 3 ] || { echo "bench-idle: the agent saw $added modems, not 3" >&2; exit 1; }

read -r rss_med rss_max < <(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f\n", a[int((NR+1)/2)]/1024, a[NR]/1024}')
cpu_pct=$(awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" 'BEGIN {printf "%.2f", (c1 - c0) / hz / (t1 - t0) * 100}')
echo "bench-idle: profile=$PROFILE window=${WINDOW}s rss_median_mb=$rss_med rss_max_mb=$rss_max cpu_pct_of_one_core=$cpu_pct threads=$threads"
echo "bench-idle: largest mappings (RSS, MiB):"
awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {rss[name] += $2} END {for (n in rss) printf "%8.1f %s\n", rss[n]/1024, n}' "/proc/$agent/smaps" \
  | sort -rn | head -n 12 | tee "$OUT/mappings.txt"

if [ "$WRITE" = 1 ]; then
  row="| $(date -u +%Y-%m-%d) | $PROFILE | ${WINDOW} s | $([ "${BENCH_CLIP:-1}" = 0 ] && echo none || echo 1 clip) | $rss_med | $rss_max | $cpu_pct | $threads |"
  python3 - "$row" <<'PYTHON'
import sys, re
path = "docs/benchmarks.md"
text = open(path).read()
begin, end = "<!-- bench:idle:begin -->", "<!-- bench:idle:end -->"
head, rest = text.split(begin, 1)
body, tail = rest.split(end, 1)
lines = [l for l in body.strip("\n").splitlines()]
lines.append(sys.argv[1])
open(path, "w").write(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
PYTHON
  echo "bench-idle: row added to docs/benchmarks.md"
fi
