#!/usr/bin/env bash
# The two gst-launch-1.0 lines of docs/elements.md / README, run exactly as written
# with GST_PLUGIN_PATH at the built plugin: the sender must reach EOS and exit on its
# own, and the receiver's file must decode with no TS continuity errors.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --locked -p gst-plugin-ristbond -p braid-agent 2>&1 | tail -n 1
export GST_PLUGIN_PATH="$PWD/target/debug"
OUT=target/launch-smoke
rm -rf "$OUT" && mkdir -p "$OUT"
P1="${SMOKE_PORT:-15100}"
P2=$((P1 + 2))

gst-inspect-1.0 ristbondsink >"$OUT/inspect-sink.txt"
gst-inspect-1.0 ristbondsrc >"$OUT/inspect-src.txt"

gst-launch-1.0 ristbondsrc links="rist://@0.0.0.0:$P1,rist://@0.0.0.0:$P2" ! filesink location="$OUT/out.ts" \
  >"$OUT/receiver.log" 2>&1 &
rx=$!
sleep 1
if ! timeout 60 gst-launch-1.0 -e videotestsrc num-buffers=300 ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
  ! x264enc tune=zerolatency bitrate=4000 key-int-max=60 ! h264parse ! mpegtsmux alignment=7 \
  ! ristbondsink links="rist://127.0.0.1:$P1,rist://127.0.0.1:$P2" >"$OUT/sender.log" 2>&1; then
  kill -INT "$rx" 2>/dev/null || true
  echo "launch-smoke: FAIL the sender did not reach EOS and exit within 60 s" >&2
  tail -n 20 "$OUT/sender.log" >&2
  exit 1
fi
sleep 1
kill -INT "$rx" 2>/dev/null || true
wait "$rx" 2>/dev/null || true

verdict=$(target/debug/braid-agent verify-ts "$OUT/out.ts")
echo "launch-smoke: $verdict"
echo "$verdict" | grep -q 'frames=300 ' || { echo "launch-smoke: FAIL expected 300 frames" >&2; exit 1; }
echo "$verdict" | grep -q 'cc_errors=0' || { echo "launch-smoke: FAIL continuity errors" >&2; exit 1; }

# The agent's own pipeline, as `braid-agent pipeline --print` prints it for a field
# engineer, run by hand (fallbackswitch from gst-plugins-rs built as a plugin too).
cargo build --locked -p gst-plugin-fallbackswitch 2>&1 | tail -n 1
P3=$((P1 + 4))
cat >"$OUT/stream.json" <<JSON
{"stream_id": "smoke", "source": {"mode": "test", "resolution": "320x240", "framerate": 25},
 "encoder": {"codec": "h264", "bitrate_kbps": 500}, "audio": {"enabled": true, "codec": "aac"},
 "bonding_config": {"version": 1, "links": [{"id": 0, "uri": "rist://127.0.0.1:$P3"}]}}
JSON
line=$(target/debug/braid-agent pipeline --print "$OUT/stream.json")
echo "$line" >"$OUT/printed-line.txt"
gst-launch-1.0 ristbondsrc links="rist://@0.0.0.0:$P3" ! filesink location="$OUT/printed.ts" \
  >"$OUT/printed-receiver.log" 2>&1 &
rx=$!
sleep 1
# Live sources: stop it with SIGINT after 5 s; -e turns that into EOS.
timeout 60 timeout -s INT 5 bash -c "exec $line" >"$OUT/printed-sender.log" 2>&1 || true
sleep 1
kill -INT "$rx" 2>/dev/null || true
wait "$rx" 2>/dev/null || true
grep -q 'Got EOS from element' "$OUT/printed-sender.log" || {
  echo "launch-smoke: FAIL the printed pipeline did not end cleanly on EOS" >&2
  tail -n 20 "$OUT/printed-sender.log" >&2
  exit 1
}
verdict=$(target/debug/braid-agent verify-ts "$OUT/printed.ts")
echo "launch-smoke: printed pipeline: $verdict"
frames=$(echo "$verdict" | sed -n 's/.*frames=\([0-9]*\).*/\1/p')
[ "${frames:-0}" -ge 75 ] || { echo "launch-smoke: FAIL printed pipeline: too few frames" >&2; exit 1; }
echo "$verdict" | grep -q 'cc_errors=0' || { echo "launch-smoke: FAIL printed pipeline: continuity errors" >&2; exit 1; }
