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
