#!/usr/bin/env bash
# Builds the wheel (maturin, debug profile: the same target dir as the
# workspace's tests), installs it in target/python-venv and runs its tests:
# the reference's own tests/test_unit.py (namebump 0.0.16, unmodified),
# end to end against a Keyway server and the reference server, and the
# README example. Needs the `keyway` binary and the reference venv, which
# `cargo test --workspace` leaves behind (tests/run.sh runs that first).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
venv="$target/python-venv"
requirements=bindings/python/tests/requirements.txt
if ! cmp -s "$requirements" "$venv/installed.txt"; then
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/installed.txt"
fi
rm -rf "$target/wheels"
"$venv/bin/maturin" build -q --profile dev -m bindings/python/Cargo.toml \
    --out "$target/wheels" -i "$venv/bin/python"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$target"/wheels/keyway-*.whl
cargo build -q --locked -p keyway
[ -x "$target/reference-venv/bin/python" ] || {
    echo "python tests: $target/reference-venv is missing: run cargo test --workspace first" >&2
    exit 1
}
cd bindings/python/tests
KEYWAY_BIN="$target/debug/keyway" REFERENCE_PYTHON="$target/reference-venv/bin/python" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
