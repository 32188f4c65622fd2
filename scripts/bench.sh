#!/usr/bin/env bash
# `make bench`: the bonded-transport benchmark of issue 3 (scenarios B1-B6: Braid vs
# GStreamer ristsink/ristsrc bonding round-robin and broadcast vs single-link RIST vs
# udpsink/udpsrc) over the userspace link emulator. Rewrites the part of
# docs/benchmarks.md between <!-- bench:transport:begin --> and <!-- bench:transport:end -->
# and keeps the rest of the file. Takes about 20 minutes on 2 cores; pass --quick (make bench
# ARGS=--quick) for a ~6-minute indicative run. Raw results: target/bench/results-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --locked --release -p braid-bench -p braid-linkemu 2>&1 | tail -n 1
exec target/release/braid-bench suite --doc docs/benchmarks.md --work-dir target/bench "$@"
