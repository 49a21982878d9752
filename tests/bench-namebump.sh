#!/usr/bin/env bash
# Throughput and latency of namebump servers under one load generator
# (`keyway namebump bench`), in one run, all on loopback:
#   Keyway on SQLite, Keyway on PostgreSQL, the reference (namebump 0.0.16)
#   on MariaDB. For each: maximum GET/s and PUT/s, then p99 at half of each
#   maximum, each run after a 5 s pause. On SQLite also claims (PUTs of new
#   names from many source addresses, the quota path, issue 12): maximum
#   claims/s, then p50/p99 at half of it. Prints the Markdown tables
#   recorded in BENCHMARKS.md.
#
#   bash tests/bench-namebump.sh [SECONDS] [CLIENTS]
#   SQLITE_ONLY=1 bash tests/bench-namebump.sh   # Keyway on SQLite only
#
# Server and generator share the CPU, and on a machine where other
# sessions are busy, Linux autogroup scheduling gives this session a fair
# share of it whatever the nice values: a figure that is flat across client
# counts, with the server well under its cores, measures that share (check
# `vmstat 1` for idle time before reading more into it; issue 12).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-10}
clients=${2:-32}
ref_clients=8
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p keyway
if [ -z "${SQLITE_ONLY:-}" ]; then
    eval "$(bash tests/services.sh)"
    cargo test -q -p keyway-tests --test namebump_reference_crypto >/dev/null   # the reference venv
fi
K=target/release/keyway
. tests/bench-namebump-lib.sh
py=${CARGO_TARGET_DIR:-target}/reference-venv/bin/python
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port)
"$K" keygen --out "$work/server.key" > "$work/server.pub"

bench() { # label mix|claims rate clients transport
    # Each run starts from a settled server: the previous run's background
    # work (SQLite WAL checkpoints, PostgreSQL writes) drains first.
    sleep 5
    local rate=() what=(--mix "$2")
    [ "$3" != "-" ] && rate=(--rate "$3")
    [ "$2" = claims ] && what=(--claims)
    "$K" namebump bench --server "127.0.0.1:$port" --server-pk "$(cat "$work/server.pub")" \
        --clients "$4" --duration "$secs" "${what[@]}" --transport "$5" --timeout 10 "${rate[@]}" --json \
        | sed "s/^/$1 /"
}
half() { # bench-line op
    python3 -c 'import json,sys; l=sys.argv[1].split(" ",1)[1]; print(max(1, json.loads(l)[sys.argv[2]]["per_sec"] / 2))' "$1" "$2"
}
measure() { # label clients transport
    local g p
    g=$(bench "$1" 1:0 - "$2" "$3"); echo "$g"
    p=$(bench "$1" 0:1 - "$2" "$3"); echo "$p"
    bench "$1" 1:0 "$(half "$g" get)" "$2" "$3"
    bench "$1" 0:1 "$(half "$p" put)" "$2" "$3"
}
measure_claims() { # label clients transport
    local c
    c=$(bench "$1" claims - "$2" "$3"); echo "$c"
    bench "$1" claims "$(half "$c" claim)" "$2" "$3"
}
stop() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

results="$work/results"
{
    # Keyway on SQLite.
    "$K" namebump serve --listen "127.0.0.1:$port" --db "sqlite:$work/nb.db" --key "$work/server.key" \
        --rate-limit 0 > "$work/serve.out" 2> "$work/serve.err" & pids+=($!)
    wait_line "$work/serve.out" server_pk=
    measure keyway-sqlite "$clients" udp
    # New names: 8 clients (latency at low concurrency) and $clients.
    measure_claims keyway-sqlite-claims 8 udp
    measure_claims keyway-sqlite-claims "$clients" udp
    stop
    [ -n "${SQLITE_ONLY:-}" ] && exit 0

    # Keyway on PostgreSQL, in a database of its own.
    db="keyway_bench_$$"
    psql "$KEYWAY_TEST_POSTGRES/postgres" -qc "CREATE DATABASE $db" >&2
    "$K" namebump serve --listen "127.0.0.1:$port" --db "$KEYWAY_TEST_POSTGRES/$db" --key "$work/server.key" \
        --rate-limit 0 > "$work/serve-pg.out" 2> "$work/serve-pg.err" & pids+=($!)
    wait_line "$work/serve-pg.out" server_pk=
    measure keyway-postgres "$clients" udp
    stop
    psql "$KEYWAY_TEST_POSTGRES/postgres" -qc "DROP DATABASE $db" >&2

    # The reference on MariaDB (its wrapper creates and drops the database).
    NB_PORT=$port NB_ENC_SK=$(cat "$work/server.key") NB_ENC_PK=$(cat "$work/server.pub") \
        NB_DB_NAME="keyway_bench_ref_$$" PYTHONNOUSERSITE=1 \
        "$py" tests/interop/namebump_ref_server.py > "$work/ref.out" 2> "$work/ref.err" & pids+=($!)
    wait_line "$work/ref.out" "listening UDP"
    # Over TCP: its UDP replies go to whichever client sent last (bug 9), so
    # concurrent UDP clients mostly time out.
    measure reference-mariadb "$ref_clients" tcp
    stop
} | tee "$results" >&2

python3 - "$results" "$secs" <<'PY'
import json, os, platform, sys
rows, claims = {}, []
for line in open(sys.argv[1]):
    label, doc = line.split(" ", 1)
    r = json.loads(doc)
    if r.get("mix") == "claims":
        claims.append((label, r))
    else:
        rows.setdefault(label, []).append(r)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
      f"load generator and server on the same machine, {sys.argv[2]} s per run")
print()
print("| server | transport | clients | max GET/s | max PUT/s | GET p50 / p99 at ½ max | PUT p50 / p99 at ½ max | errors / timeouts |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for label, (g, p, hg, hp) in rows.items():
    ms = lambda x: f"{x:.2f} ms"
    err = sum(r["errors"] for r in (g, p, hg, hp)); tmo = sum(r["timeouts"] for r in (g, p, hg, hp))
    print(f"| {label} | {g['transport'].upper()} | {g['clients']} | {g['get']['per_sec']:,.0f} | {p['put']['per_sec']:,.0f} | "
          f"{ms(hg['get']['p50_ms'])} / {ms(hg['get']['p99_ms'])} (at {hg['get']['per_sec']:,.0f}/s) | "
          f"{ms(hp['put']['p50_ms'])} / {ms(hp['put']['p99_ms'])} (at {hp['put']['per_sec']:,.0f}/s) | {err} / {tmo} |")
if claims:
    print()
    print("New-name claims (PUTs of names never claimed, 20 per source address, DONT_BUMP):")
    print()
    print("| server | transport | clients | max claims/s | p50 / p99 at max | p50 / p99 at ½ max | errors / timeouts |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (label, m), (_, h) in zip(claims[0::2], claims[1::2]):
        c, hc = m["claim"], h["claim"]
        print(f"| {label} | {m['transport'].upper()} | {m['clients']} | {c['per_sec']:,.0f} | "
              f"{c['p50_ms']:.2f} / {c['p99_ms']:.2f} ms | {hc['p50_ms']:.2f} / {hc['p99_ms']:.2f} ms (at {hc['per_sec']:,.0f}/s) | "
              f"{m['errors'] + h['errors']} / {m['timeouts'] + h['timeouts']} |")
PY
