#!/usr/bin/env bash
# Runs every Keyway test: formatting, lints, the whole workspace's tests
# (vectors, properties, storage on SQLite/PostgreSQL/MariaDB, servers and
# clients over loopback, live interop with the Python reference), the no_std
# proof, a build of the fuzz targets and the node UI in headless Chromium.
# Works on a fresh Debian machine:
# it installs what it needs first. Network use: package installs only; every
# test talks to loopback or to nothing at all, except the firmware's TAP
# tests (tests/tests/embassy_tap.rs), which talk to 10.77.0.0/24 inside a
# network namespace of their own: they need root, as CI runs this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash tests/setup-debian.sh
# PostgreSQL and MariaDB for the storage suite and the reference server.
eval "$(bash tests/services.sh)"

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs: every intra-doc link resolves"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "no_std proof: keyway-core linked into a #![no_std] staticlib with its own panic handler"
cargo build --release --locked --manifest-path tests/no-std-check/Cargo.toml \
    --target-dir target/no-std-check
step "no_std proof: every machine run from that crate (its tests call each one)"
cargo test --locked --manifest-path tests/no-std-check/Cargo.toml --target-dir target/no-std-check
step "no_std + alloc proof: the secure-link machine (feature link) in the same staticlib, with a bump allocator"
cargo build --release --locked --manifest-path tests/no-std-check/Cargo.toml \
    --target-dir target/no-std-check --features link
cargo test --locked --manifest-path tests/no-std-check/Cargo.toml --target-dir target/no-std-check \
    --features link
step "no_std proof: the registry's codecs (feature registry; alloc linked by NFC, not used on their path)"
cargo build --release --locked --manifest-path tests/no-std-check/Cargo.toml \
    --target-dir target/no-std-check --features registry
cargo test --locked --manifest-path tests/no-std-check/Cargo.toml --target-dir target/no-std-check \
    --features registry

step "firmware timing: keyway-embassy on embassy-time's mock driver (no sockets, no sleeps)"
cargo test --locked --manifest-path tests/embassy-mock-time/Cargo.toml \
    --target-dir target/embassy-mock-time

step "firmware budget images build (tests/bench-embassy-budget.sh measures them; sizes are not asserted)"
rustup target add thumbv7em-none-eabihf
cargo build --release --locked --manifest-path tests/embassy-budget/Cargo.toml \
    --target-dir target/embassy-budget --target thumbv7em-none-eabihf --bin firmware --bin embassy
cargo build --release --locked --manifest-path tests/embassy-budget/Cargo.toml \
    --target-dir target/embassy-budget --bin stack

step "fuzz targets compile"
cargo check --locked --manifest-path fuzz/Cargo.toml --target-dir target/fuzz-check

step "C library (the C examples in ffi/tests link the static library)"
cargo build --locked -p keyway-ffi

step "the C library takes the namebump client without the server's crates (issue 13)"
if cargo tree --locked -p keyway-ffi -e normal | grep -E '(sqlx|rusqlite|axum|prometheus-client) v'; then
    echo "keyway-ffi depends on a server crate (above): keyway-namebump must come with features = [\"client\"] only" >&2
    exit 1
fi

step "tests"
cargo test --workspace --locked

step "Python wheel: the reference's unit tests, end to end against Keyway and the reference, the README example"
bash bindings/python/test.sh

step "mobile library (uniffi): Kotlin tests on the JVM against the CLI's servers, the README example, the Swift bindings' completeness"
bash bindings/mobile/test.sh

step "node UI in a real headless Chromium: pairing, status, replayed/altered/reordered frames refused (issue 16)"
bash platform/node-ui/tests/chromium.sh
