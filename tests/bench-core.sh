#!/usr/bin/env bash
# Benchmarks the core's namebump PUT path (1 KiB value) and the Python
# reference on the same operations in one run, and prints the Markdown
# table recorded in BENCHMARKS.md. Loopback-free: pure computation.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

# The reference venv (shared with the interop tests).
cargo test -q -p keyway-tests --test namebump_reference_crypto >/dev/null

cargo bench -p keyway-core --features std --bench namebump -- --noplot "$@"
ref_json=$("$target/reference-venv/bin/python" tests/interop/namebump_crypto_bench.py)

python3 - "$target/criterion/namebump_put_1KiB" "$ref_json" <<'PY'
import json, os, platform, subprocess, sys
crit, ref = sys.argv[1], json.loads(sys.argv[2])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
      f"{rustc}; Python {platform.python_version()}")
print()
print("| operation (PUT, 1 KiB value) | Keyway (median) | reference namebump 0.0.16 (median) | speed-up |")
print("|---|---:|---:|---:|")
def fmt(s):
    return f"{s * 1e9:.0f} ns" if s < 1e-6 else f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"
for op in ["pack", "unpack", "sign", "verify", "encrypt", "decrypt"]:
    est = json.load(open(os.path.join(crit, op, "new", "estimates.json")))
    ours = est["median"]["point_estimate"] / 1e9
    print(f"| {op} | {fmt(ours)} | {fmt(ref[op])} | {ref[op] / ours:,.0f}× |")
PY
