#!/usr/bin/env bash
# namebump at scale (issue 12), in one run on loopback, each run after a
# 5 s pause:
#   1. the crypto floor of one PUT (criterion: open + verify + seal the
#      reply), over 512 distinct requests taken in turn as a server gets
#      them (`namebump_server/put_floor_varied`, which the ratios use) and
#      for one request repeated (`put_floor`); measured again after the
#      SQLite runs, and the ratios use the mean of the two (this machine's
#      speed drifts by several % within minutes);
#   2. Keyway on SQLite: new-name claims, refreshes and GETs, each at its
#      maximum and at half of it (p50/p99), with the server's CPU per
#      operation (from /proc, utime + stime);
#   3. the same on PostgreSQL;
#   4. one, two and three servers on one PostgreSQL database, each driven
#      by its own load generator with a third of the clients: aggregate
#      ops/s, server CPU per op, and the database work per PUT from the
#      servers' metrics (write transactions and statements, i.e. round
#      trips, per PUT).
# The load generator signs and seals its requests before each run and
# checks the replies after it (`--precompute`), so that beside the server
# it costs little more than its sends and receives (issue 12's method).
# Prints the Markdown tables recorded in BENCHMARKS.md.
#
#   bash tests/bench-namebump-scale.sh [SECONDS] [CLIENTS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-10}
clients=${2:-32}
export PATH="$HOME/.cargo/bin:$PATH"
eval "$(bash tests/services.sh)"
cargo build --release -q -p keyway
target=${CARGO_TARGET_DIR:-$root/target}
K=$target/release/keyway
. tests/bench-namebump-lib.sh
work=$(mktemp -d)
pids=()
dbs=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for d in "${dbs[@]}"; do psql "$KEYWAY_TEST_POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $d" >&2 || true; done
    rm -rf "$work"
}
trap cleanup EXIT
"$K" keygen --out "$work/server.key" > "$work/server.pub"
pk=$(cat "$work/server.pub")
results="$work/results"

# 1. The floor, measured first so nothing else runs beside it.
floor() { # → "varied repeated", in ns
    floor_bench put_floor
    echo "$(floor_estimate put_floor_varied) $(floor_estimate put_floor)"
}
floor_before=$(floor)
: > "$results"

# start DB → sets $port (UDP/TCP) and $mport (metrics), appends to pids
start() {
    port=$(free_port); mport=$(free_port)
    "$K" namebump serve --listen "127.0.0.1:$port" --db "$1" --key "$work/server.key" \
        --rate-limit 0 --metrics "127.0.0.1:$mport" > "$work/serve-$port.out" 2> "$work/serve-$port.err" &
    pids+=($!)
    wait_line "$work/serve-$port.out" server_pk=
}
# CPU ticks of every PostgreSQL process, as "pid ticks" lines (a backend
# born during a run counts from 0).
pg_ticks() {
    for p in $(pgrep -x postgres); do
        awk -v p="$p" '{print p, $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
    done
}
pg_delta() { # before-file after-file
    awk 'NR == FNR {b[$1] = $2; next} {d += $2 - b[$1]} END {print d + 0}' "$1" "$2"
}
metric() { # mport name
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {s += $2} END {print s + 0}'
}
# bench PORT KIND RATE CLIENTS → one JSON line; KIND is get, put or claim
bench() {
    local args=(--mix 0:1)
    case $2 in
        get) args=(--mix 1:0) ;;
        claim) args=(--claims) ;;
    esac
    local rate=()
    [ "$3" != "-" ] && rate=(--rate "$3")
    "$K" namebump bench --server "127.0.0.1:$1" --server-pk "$pk" --clients "$4" \
        --duration "$secs" --timeout 10 --precompute "${args[@]}" "${rate[@]}" --json
}
per_sec() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]]["per_sec"])' "$1" "$2"; }

# 2 and 3: one server, every kind at max then at half max.
single() { # label db
    start "$2"
    local pid=${pids[-1]}
    for kind in claim put get; do
        sleep 5
        local c0 s0 t0 line half
        c0=$(cpu_ticks "$pid"); s0=$(metric "$mport" keyway_namebump_db_write_statements_total)
        t0=$(metric "$mport" keyway_namebump_db_transactions_total)
        line=$(bench "$port" "$kind" - "$clients")
        echo "$1 max $kind $(( $(cpu_ticks "$pid") - c0 )) \
$(( $(metric "$mport" keyway_namebump_db_write_statements_total) - s0 )) \
$(( $(metric "$mport" keyway_namebump_db_transactions_total) - t0 )) $line" | tee -a "$results" >&2
        half=$(python3 -c 'import sys; print(max(1, float(sys.argv[1]) / 2))' "$(per_sec "$line" "$kind")")
        sleep 5
        echo "$1 half $kind 0 0 0 $(bench "$port" "$kind" "$half" "$clients")" | tee -a "$results" >&2
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; unset 'pids[-1]'
}
single keyway-sqlite "sqlite:$work/nb.db"
sleep 5
echo "floor $floor_before $(floor)" > "$work/floor"
db="keyway_bench_pg_$$"; dbs+=("$db")
psql "$KEYWAY_TEST_POSTGRES/postgres" -qc "CREATE DATABASE $db" >&2
single keyway-postgres "$KEYWAY_TEST_POSTGRES/$db"

# 4. N servers on one PostgreSQL database, refreshes and claims.
for n in 1 2 3; do
    db="keyway_bench_pg${n}_$$"; dbs+=("$db")
    psql "$KEYWAY_TEST_POSTGRES/postgres" -qc "CREATE DATABASE $db" >&2
    ports=(); mports=(); spids=()
    for _ in $(seq 1 "$n"); do
        start "$KEYWAY_TEST_POSTGRES/$db"; ports+=("$port"); mports+=("$mport"); spids+=("${pids[-1]}")
    done
    for kind in claim put; do
        sleep 5
        pg_ticks > "$work/pg0"
        c0=0; s0=0; t0=0
        for i in "${!ports[@]}"; do
            c0=$((c0 + $(cpu_ticks "${spids[$i]}")))
            s0=$((s0 + $(metric "${mports[$i]}" keyway_namebump_db_write_statements_total)))
            t0=$((t0 + $(metric "${mports[$i]}" keyway_namebump_db_transactions_total)))
        done
        outs=()
        for i in "${!ports[@]}"; do
            bench "${ports[$i]}" "$kind" - $((clients / n)) > "$work/multi-$i.json" &
            outs+=($!)
        done
        wait "${outs[@]}"
        c1=0; s1=0; t1=0
        for i in "${!ports[@]}"; do
            c1=$((c1 + $(cpu_ticks "${spids[$i]}")))
            s1=$((s1 + $(metric "${mports[$i]}" keyway_namebump_db_write_statements_total)))
            t1=$((t1 + $(metric "${mports[$i]}" keyway_namebump_db_transactions_total)))
        done
        pg_ticks > "$work/pg1"
        echo "pg-x$n max $kind $((c1 - c0)) $((s1 - s0)) $((t1 - t0)) $(pg_delta "$work/pg0" "$work/pg1") \
$(cat "$work"/multi-*.json | tr '\n' ' ')" | tee -a "$results" >&2
        rm -f "$work"/multi-*.json
    done
    for p in "${spids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    pids=()
done

cat "$work/floor" "$results" > "$results.all"
python3 - "$results.all" "$secs" "$(getconf CLK_TCK)" <<'PY'
import json, os, platform, sys
lines = open(sys.argv[1]).read().splitlines()
secs, hz = sys.argv[2], int(sys.argv[3])
v1, r1, v2, r2 = (float(x) / 1e3 for x in lines[0].split()[1:5])
floor_us = (v1 + v2) / 2
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
      f"load generators and servers on the same machine, {secs} s per run")
print()
print(f"Crypto floor of one PUT (criterion, same run): {floor_us:.0f} µs, the mean of {v1:.0f} µs "
      f"before the SQLite runs and {v2:.0f} µs after them, over 512 distinct requests taken in turn "
      f"(`namebump_server/put_floor_varied`); one request repeated (`put_floor`): {r1:.0f} and {r2:.0f} µs")
print()
def docs(rest):
    dec = json.JSONDecoder(); out = []; i = 0; rest = rest.strip()
    while i < len(rest):
        d, j = dec.raw_decode(rest, i); out.append(d); i = j
        while i < len(rest) and rest[i] == " ": i += 1
    return out
rows = {}
pg = {}
for line in lines[1:]:
    label, phase, kind, ticks, stmts, txs, rest = line.split(" ", 6)
    if label.startswith("pg-x"):
        pg_ticks, rest = rest.split(" ", 1)
        pg[(label, kind)] = int(pg_ticks)
    rows[(label, phase, kind)] = (int(ticks), int(stmts), int(txs), docs(rest))
name = {"claim": "claims", "put": "refreshes", "get": "GETs"}
print("| server | operation | max ops/s | p50 / p99 at ½ max | server CPU per op | vs floor | round trips per write | errors / timeouts |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for label in ("keyway-sqlite", "keyway-postgres"):
    for kind in ("claim", "put", "get"):
        ticks, stmts, txs, (m,) = rows[(label, "max", kind)]
        _, _, _, (h,) = rows[(label, "half", kind)]
        n = m[kind]["count"]
        cpu_us = ticks / hz / max(n, 1) * 1e6
        vs = f"{cpu_us / floor_us:.2f}×" if kind != "get" else "–"
        rt = f"{stmts / max(n, 1):.1f}" if stmts and kind != "get" else "–"
        err = m["errors"] + h["errors"]; tmo = m["timeouts"] + h["timeouts"]
        print(f"| {label} | {name[kind]} | {m[kind]['per_sec']:,.0f} | "
              f"{h[kind]['p50_ms']:.2f} / {h[kind]['p99_ms']:.2f} ms (at {h[kind]['per_sec']:,.0f}/s) | "
              f"{cpu_us:.0f} µs | {vs} | {rt} | {err} / {tmo} |")
print()
print("| servers on one PostgreSQL | operation | aggregate ops/s | per server | server CPU per op | PostgreSQL CPU per op | transactions per write | round trips per write | errors / timeouts |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for n in (1, 2, 3):
    for kind in ("claim", "put"):
        ticks, stmts, txs, ds = rows[(f"pg-x{n}", "max", kind)]
        total = sum(d[kind]["per_sec"] for d in ds); count = sum(d[kind]["count"] for d in ds)
        err = sum(d["errors"] for d in ds); tmo = sum(d["timeouts"] for d in ds)
        db_us = pg[(f"pg-x{n}", kind)] / hz / max(count, 1) * 1e6
        print(f"| {n} | {name[kind]} | {total:,.0f} | {total / n:,.0f} | {ticks / hz / max(count, 1) * 1e6:.0f} µs | "
              f"{db_us:.0f} µs | {txs / max(count, 1):.2f} | {stmts / max(count, 1):.1f} | {err} / {tmo} |")
print()
signed = sum(d.get("signed_during_run", 0) for r in rows.values() for d in r[3])
print(f"Requests the generator had to sign during the runs (its prepared ones ran out): {signed:,}")
PY
