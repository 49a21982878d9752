#!/usr/bin/env bash
# The same benchmarks on two checkouts of Keyway, alternately, in one run:
# used for issue 13 (the protocol machines moved into keyway-core) to show
# the move costs nothing. BEFORE is a checkout of the older commit (e.g. a
# `git worktree add /tmp/before <rev>`); this checkout is "after".
#
#   bash tests/bench-before-after.sh BEFORE_DIR [SECONDS]
#
# Per checkout: namebump GET/s and PUT/s (`keyway namebump bench`, SQLite
# server, 32 clients, server and generator from that checkout), sidewire
# delivery latency, ACK round trip and sustained messages/s
# (`cargo bench -p keyway-tests --bench sidewire -- --keyway-only`), and a
# Drayer full sync of 100,000 records over loopback HTTP
# (`cargo bench -p keyway-drayer --bench drayer -- --sync-only`). Each
# figure is measured twice, before-after-before-after; prints the table.
set -euo pipefail
after=$(cd "$(dirname "$0")/.." && pwd)
before=$(cd "$1" && pwd)
secs=${2:-10}
export PATH="$HOME/.cargo/bin:$PATH"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for tree in "$before" "$after"; do
    (cd "$tree" && cargo build --release -q -p keyway \
        && cargo bench -q -p keyway-tests --bench sidewire --no-run \
        && cargo bench -q -p keyway-drayer --bench drayer --no-run) >&2
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

namebump() { # tree label
    local K=$1/target/release/keyway port pid
    port=$(free_port)
    rm -f "$work/k"; "$K" keygen --out "$work/k" > "$work/pk"
    rm -f "$work/nb.db"*
    "$K" namebump serve --listen "127.0.0.1:$port" --db "sqlite:$work/nb.db" --key "$work/k" \
        --rate-limit 0 > "$work/serve.out" 2>&1 & pid=$!; pids+=("$pid")
    for _ in $(seq 1 100); do grep -q server_pk= "$work/serve.out" && break; sleep 0.1; done
    for mix in 1:0 0:1; do
        sleep 3
        echo "$2 namebump $mix $("$K" namebump bench --server "127.0.0.1:$port" --server-pk "$(cat "$work/pk")" \
            --clients 32 --duration "$secs" --mix "$mix" --timeout 10 --json)"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
sidewire() { # tree label
    (cd "$1" && cargo bench -q -p keyway-tests --bench sidewire -- "$secs" --keyway-only 2>/dev/null) \
        | grep '^| Keyway' | sed "s/^/$2 sidewire /"
}
drayer() { # tree label
    (cd "$1" && cargo bench -q -p keyway-drayer --bench drayer -- 100000 --sync-only 2>/dev/null) \
        | grep -i 'sync' | sed "s/^/$2 drayer /"
}
{
    for round in 1 2; do
        for side in before after; do
            tree=$before; [ "$side" = after ] && tree=$after
            namebump "$tree" "$side"
            sidewire "$tree" "$side"
            drayer "$tree" "$side"
        done
    done
} | tee "$work/results" >&2

python3 - "$work/results" "$secs" <<'PY'
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {sys.argv[2]} s per run, "
      "each figure measured twice, before and after alternately")
print()
rows = {}
def add(name, side, value):
    rows.setdefault(name, {}).setdefault(side, []).append(value)
for line in open(sys.argv[1]):
    side, what, rest = line.rstrip("\n").split(" ", 2)
    if what == "namebump":
        mix, doc = rest.split(" ", 1)
        op = "get" if mix == "1:0" else "put"
        add(f"namebump {op.upper()}/s (SQLite, 32 clients)", side, f"{json.loads(doc)[op]['per_sec']:,.0f}")
    elif what == "sidewire":
        f = [c.strip() for c in rest.split("|")[1:-1]]
        add("sidewire delivery p50 / p99", side, f[1])
        add("sidewire send→ACK p50 / p99", side, f[2])
        add("sidewire delivered/s (64 senders)", side, f[3])
    elif what == "drayer":
        add("Drayer full sync, records/s (100,000)", side, rest.split()[0])
print("| benchmark | before | after |")
print("|---|---|---|")
for k, v in rows.items():
    print(f"| {k} | {' ; '.join(v.get('before', []))} | {' ; '.join(v.get('after', []))} |")
PY
