#!/usr/bin/env bash
# Secure-link figures (issue 16) in one run: handshake + identity proofs
# (CPU per side, wall time of a loopback dial), bulk MB/s and 64-byte
# messages/s over one link, and the raw ChaCha20-Poly1305 speed of the
# crate snow seals with, measured in the same process (the physical limit).
# Prints a Markdown table. Figures are recorded in BENCHMARKS.md only from a
# run on a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "Machine: $cpu, $(nproc) cores, $(uname -sr); $(rustc --version)"
echo
cargo run -q --release --locked -p keyway-link --example bench_link
