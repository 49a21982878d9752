#!/usr/bin/env bash
# One run, one server: Python put/get round trips per second through
# Keyway's wheel (release build) and through the reference namebump 0.0.16,
# against a Keyway server (release) on 127.0.0.1. Prints a Markdown table.
#
#     bash bindings/python/bench.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
rounds=${1:-300}
target=${CARGO_TARGET_DIR:-$root/target}
venv="$target/python-bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin==1.16.0 ecdsa==0.19.1 msgpack==1.1.1
"$venv/bin/maturin" build -q --release -m bindings/python/Cargo.toml --out "$target/wheels-release" -i "$venv/bin/python"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$target"/wheels-release/keyway-*.whl
cargo build -q --release --locked -p keyway
[ -x "$target/reference-venv/bin/python" ] || { echo "run cargo test --workspace first (the reference venv)" >&2; exit 1; }
work=$(mktemp -d)
"$target/release/keyway" namebump serve --listen 127.0.0.1:0 --rate-limit 0 \
    --db "sqlite:$work/nb.db" --key "$work/server.key" > "$work/out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q server_pk= "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening=//p' "$work/out" | head -1)
pk=$(sed -n 's/^server_pk=//p' "$work/out")
host=${addr%:*}; port=${addr##*:}
ours=$("$venv/bin/python" bindings/python/bench.py "$host" "$port" "$pk" "$rounds")
theirs=$(PYTHONNOUSERSITE=1 "$target/reference-venv/bin/python" bindings/python/bench.py "$host" "$port" "$pk" "$rounds")
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; Keyway server (release, SQLite) on 127.0.0.1; $rounds sequential calls each"
echo
echo "| Python package | put round trips/s | get round trips/s |"
echo "|---|---:|---:|"
for row in "$ours" "$theirs"; do
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); name={"keyway":"Keyway wheel","reference":"namebump 0.0.16 (reference)"}[r["package"]]; print("| %s | %.0f | %.0f |" % (name, r["puts_per_s"], r["gets_per_s"]))' "$row"
done
