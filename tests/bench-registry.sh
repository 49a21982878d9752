#!/usr/bin/env bash
# The name registry (issue 17): local lookups/s from a replica of NAMES
# names, registrations/s through one server, and replication lag (a
# writer's register → visible in a second client's replica) p50/p99, all
# through `keyway registry serve` / `keyway registry client` on 127.0.0.1
# (tests/benches/registry.rs says what each figure includes). Prints one
# `figure=… key=value…` line per figure, the same lines as the script that
# measures hyper-registry beside it (that script and hyper-registry's code
# live outside this repository, never in it). Figures go into
# BENCHMARKS.md only from a run on a quiet machine.
#
#   bash tests/bench-registry.sh [NAMES] [LOOKUPS] [REGISTRATIONS] [CLIENTS] [LAG_SAMPLES]
#   (defaults 100000 100000 2000 4 300)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q --locked -p keyway
target=${CARGO_TARGET_DIR:-$root/target}
echo "# $(uname -sr); $(rustc --version)"
KEYWAY_BIN=$target/release/keyway cargo bench -q --locked -p keyway-tests --bench registry -- "$@"
