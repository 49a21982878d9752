# Helpers shared by the namebump bench scripts (sourced, not run). They
# expect $target (the cargo target directory).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_line() { # file pattern
    for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; return 1
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Runs the crypto floor's criterion benches whose names match FILTER, with
# any further criterion arguments (output to stderr).
floor_bench() { # filter [criterion args...]
    local filter=$1; shift
    cargo bench -q -p keyway-core --features std,namebump --bench namebump -- --noplot "$@" \
        "namebump_server/$filter" >&2
}

# The median of a floor bench's last measurement, in ns.
floor_estimate() { # put_floor | put_floor_varied
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
        "$target/criterion/namebump_server/$1/new/estimates.json"
}
