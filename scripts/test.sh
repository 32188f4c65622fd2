#!/usr/bin/env bash
# The whole test suite (README "Test"): format, lints, every crate's tests, then the
# end-to-end demo as a short smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace 2>&1 | tee target/test.log
echo "== gst-launch-1.0 lines as written"
bash scripts/launch-smoke.sh
echo "== end-to-end: demo smoke (devplane + agent + 2 bonded links)"
DEMO_DURATION=8 bash scripts/demo.sh
echo "== bonded transport smoke: B1/B2 short over the link emulator"
bash scripts/bench-smoke.sh
echo "== package: make deb, lintian, install, units, stream as user braid, upgrade, purge (+ arm64 if its sysroot exists)"
bash scripts/deb-test.sh

# One closing line over everything above: the cargo test binaries plus the three
# end-to-end smokes and the package test (each counted as one test).
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test.log | awk '{s+=$1} END {print s+0}')
echo "test: $((passed + 4)) passed, $failed failed"
