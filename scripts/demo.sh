#!/usr/bin/env bash
# The demo (README "Demo"): a development control plane and the agent on loopback.
# The control plane enrolls the agent, starts a 1280x720@30 x264 test-pattern stream
# over two bonded RIST links into its own ristbondsrc receiver, prints the stats it
# receives, stops the stream, verifies the received TS and prints one summary line:
#   demo: OK frames=590 links=2 cc_errors=0 out=target/demo/out.ts
# Exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

DURATION="${DEMO_DURATION:-20}"
LINKS="${DEMO_LINKS:-2}"
PORT="${DEMO_PORT:-18443}"
OUT=target/demo
BIN=target/debug/braid-agent

cargo build --locked -p braid-agent --bin braid-agent 2>&1 | tail -n 1
rm -rf "$OUT"
mkdir -p "$OUT/state"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN" devplane --listen "127.0.0.1:$PORT" --token enr_demo --pin-file "$OUT/pin" \
  --links "$LINKS" --bitrate-kbps 4000 --stream-duration-s "$DURATION" \
  --exit-after-stream --out "$OUT/out.ts" 2>"$OUT/devplane.log" | tee "$OUT/devplane.out" &
dp=$!
pids+=("$dp")

for _ in $(seq 1 100); do [ -s "$OUT/pin" ] && break; sleep 0.1; done
[ -s "$OUT/pin" ] || { echo "demo: FAIL devplane did not start (see $OUT/devplane.log)"; exit 1; }

cat >"$OUT/agent.conf" <<CONF
[control_plane]
url = "wss://127.0.0.1:$PORT/agent/ws"
enrollment_token = "enr_demo"
[control_plane.tls]
mode = "pinned"
pin_sha256 = "$(cat "$OUT/pin")"

[agent]
state_dir = "$OUT/state"
media_dir = "$OUT/media"
status_interval_s = 10
CONF

"$BIN" run --config "$OUT/agent.conf" >"$OUT/agent.log" 2>&1 &
agent=$!
pids+=("$agent")

status=0
wait "$dp" || status=$?
kill -TERM "$agent" 2>/dev/null || true
wait "$agent" || true

summary=$(grep '^demo:' "$OUT/devplane.out" | tail -n 1 || true)
if [ -z "$summary" ]; then
  echo "demo: FAIL no summary from the devplane (exit $status); logs in $OUT/"
  tail -n 20 "$OUT/devplane.log" "$OUT/agent.log" >&2 || true
  exit 1
fi
[ "$status" -eq 0 ] || { tail -n 20 "$OUT/devplane.log" "$OUT/agent.log" >&2 || true; exit "$status"; }
