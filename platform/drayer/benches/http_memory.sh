#!/usr/bin/env bash
# Peak resident memory (VmHWM) of a `keyway drayer serve` process while it
# serves a stream of 40 files of 4 MiB random bytes to 8 concurrent
# `newest/10000` and 8 concurrent `newRecords/0` requests. Loopback only;
# every request and wait is bounded in time. Not a test: it prints.
#
#   bash platform/drayer/benches/http_memory.sh [KEYWAY_BINARY ...]
#
# Without arguments it builds and measures target/debug/keyway. Give
# several binaries (e.g. one built from the previous commit) to measure
# them in the same run on the same stream file.
set -euo pipefail

cd "$(dirname "$0")/../../.."
if [ "$#" -eq 0 ]; then
    cargo build -q -p keyway
    set -- target/debug/keyway
fi

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/files"
for i in $(seq 1 40); do
    head -c $((4 * 1024 * 1024)) /dev/urandom > "$work/files/f$i.bin"
done
pk=$("$1" drayer new "$work/big.stream")
"$1" drayer import-dir "$work/big.stream" "$work/files" > /dev/null
quoted=$(printf '%s' "$pk" | sed -e 's/+/%2B/g' -e 's|/|%2F|g' -e 's/=/%3D/g')
echo "stream: 40 files of 4 MiB random bytes ($(du -m "$work/big.stream" | cut -f1) MiB file)"
echo "machine: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores"

kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

for bin in "$@"; do
    "$bin" drayer serve --listen 127.0.0.1:0 "$work/big.stream" > "$work/serve.out" &
    server=$!
    for _ in $(seq 1 300); do
        grep -q '^listening=' "$work/serve.out" 2> /dev/null && break
        sleep 0.1
    done
    addr=$(sed -n 's/^listening=//p' "$work/serve.out")
    base="http://$addr/$quoted"
    curl -sS -o /dev/null --max-time 60 "$base/newest/1"
    rss=$(kib "$server" VmRSS)
    started=$(date +%s%N)
    : > "$work/codes"
    clients=()
    for _ in $(seq 1 8); do
        for what in newest/10000 newRecords/0; do
            curl -sS -o /dev/null --max-time 600 -w '%{http_code} %{size_download}\n' \
                "$base/$what" >> "$work/codes" 2>&1 &
            clients+=($!)
        done
    done
    wait "${clients[@]}" || true
    elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
    peak=$(kib "$server" VmHWM)
    kill "$server"
    wait "$server" 2> /dev/null || true
    server=""
    ok=$(grep -c '^200 ' "$work/codes" || true)
    bytes=$(awk '{ s += $2 } END { printf "%.0f", s / 1048576 }' "$work/codes")
    printf '%s: RSS before %d MiB, peak (VmHWM) %d MiB; %d of 16 answered 200, %s MiB sent in %d ms\n' \
        "$bin" $((rss / 1024)) $((peak / 1024)) "$ok" "$bytes" "$elapsed"
done
