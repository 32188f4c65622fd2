#!/usr/bin/env bash
# CI smoke of the bonded-transport benchmark (run by scripts/test.sh): Braid over the
# three emulated B1 links (2/5/10 Mbit/s, 30/50/80 ms RTT, 1 % loss) for 25 s,
# once clean (S1, 3 Mbit/s) and once with link 3 cut from 8 s to 16 s (S2, 2.5 Mbit/s).
# Checks (both): no TS packet lost inside the stream, no continuity error, no output gap
# over 1 s; S2: the dead link reported Down and re-admitted in time. About 45 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --locked -p braid-bench -p braid-linkemu 2>&1 | tail -n 1
target/debug/braid-bench suite --smoke --work-dir target/bench-smoke --port-base "${BENCH_SMOKE_PORT:-30000}"
