#!/usr/bin/env bash
# Measures the phone library's size (BENCHMARKS.md, issue 15): the host
# libkeyway_mobile.so built with the `mobile` profile (opt-level "z", LTO,
# one codegen unit, stripped), client-only as shipped and with the server
# features of the platform crates turned on (`full-for-size`), plus the
# crates each build links. Two release LTO builds: minutes. Not a test.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_INCREMENTAL=0
measure() {
    local label=$1; shift
    cargo build --locked --profile mobile -p keyway-mobile --lib "$@" >&2
    local so=target/mobile/libkeyway_mobile.so a=target/mobile/libkeyway_mobile.a
    local crates
    crates=$(cargo tree --locked -p keyway-mobile -e normal --prefix none "$@" | sed 's/ (\*)//' | sort -u | wc -l)
    printf '%s\t.so %s bytes\t.a %s bytes\t%s crates\n' "$label" "$(stat -c %s "$so")" "$(stat -c %s "$a")" "$crates"
}
measure client-only
measure full --features full-for-size
