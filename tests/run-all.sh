#!/usr/bin/env bash
# The whole test suite, as README's test command: the Rust tests (cargo test), then bntop-torch's
# pytest suite against the binary they built (python/run-tests.sh creates its torch environment
# when missing). The build is held to Cargo.lock; further arguments go to cargo test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --locked "$@"
BNTOP_BIN="$PWD/target/debug/bntop" python/run-tests.sh -q
