#!/usr/bin/env bash
# The firmware budget of issue 14, "namebump client + sidewire node with 3
# broker links" (targets: at most 64 KiB of RAM, 256 KiB of code), printed
# as a Markdown table for BENCHMARKS.md.
#
# - Code size, .data and .bss: the firmware image of tests/embassy-budget
#   (#![no_std], no allocator, opt-level "z", LTO) built for
#   thumbv7em-none-eabihf (Cortex-M4F), read with binutils' size.
# - State: the bytes of every machine and buffer the firmware keeps
#   (node with its tables, three MQTT sessions, the namebump exchange,
#   packet buffers), as compiled for that target (read from the image).
# - Stack high-water mark: the same firmware side run on the host, once
#   with the state kept outside the stack (as in a static: the work
#   alone; the thread's stack painted before and read after, to the
#   byte) and once built on the stack by value (smallest passing thread
#   stack in 4 KiB pages). The host is x86_64, so this one is a proxy for
#   the thumb figure.
#
# embassy-net's own buffers and executor are not in these figures until
# keyway-embassy takes the place of tests/embassy-budget.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH" CARGO_INCREMENTAL=0

target=thumbv7em-none-eabihf
manifest=tests/embassy-budget/Cargo.toml
dir=target/embassy-budget

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2 || {
        echo "cannot install the $target target (rustup target add $target): no firmware image to measure" >&2
        exit 1
    }
fi
for tool in size readelf nm od; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (binutils)" >&2; exit 1; }
done

cargo build --quiet --locked --release --manifest-path "$manifest" --target-dir "$dir" \
    --target "$target" --bin firmware --bin embassy >&2
cargo build --quiet --locked --release --manifest-path "$manifest" --target-dir "$dir" \
    --bin stack >&2
image="$dir/$target/release/firmware"

section() { size -A "${2:-$image}" | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'; }

# `count` u32 values at symbol `name` in `elf`'s .rodata.
rodata_u32() {
    local elf=$1 name=$2 count=$3 sym_addr sec_addr sec_off
    read -r sym_addr _ < <(nm -S "$elf" | awk -v n="$name" '$0 ~ n { print $1, $2 }')
    read -r sec_addr sec_off < <(readelf -SW "$elf" | awk '{ for (i = 1; i < NF; i++) if ($i == ".rodata") print $(i + 2), $(i + 3) }')
    od -An -w$((4 * count)) -tu4 -j $((0x$sym_addr - 0x$sec_addr + 0x$sec_off)) -N $((4 * count)) "$elf"
}
text=$(section .text)
rodata=$(section .rodata)
exidx=$(section .ARM.exidx)
data=$(section .data)
bss=$(section .bss)
code=$((text + rodata + exidx + data))

# The state's sizes on the target (src/lib.rs STATE_SIZES).
read -r state node link exchange tables < <(rodata_u32 "$image" STATE_SIZES 5)

declare -A host
while IFS='=' read -r key value; do host[$key]=$value; done < <("$dir/release/stack")
stack=${host[stack_bytes]}
stack_with_state=${host[stack_with_state_bytes]}
ram=$((data + bss + state + stack))

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
verdict() { if [ "$1" -le "$2" ]; then echo "within"; else echo "**over**"; fi; }

cat <<EOF
| Firmware budget (issue 14): namebump client + sidewire node, 3 broker links | Bytes | |
| --- | ---: | --- |
| Code: .text + .rodata + .ARM.exidx + .data image ($target, opt-level z, LTO) | $code | $(kib "$code"); target ≤ 256 KiB: $(verdict "$code" $((256 * 1024))) |
| Static RAM: .data + .bss of the image | $((data + bss)) | the state below lives on the task's stack in this image |
| State: everything the firmware keeps ($target) | $state | $(kib "$state") |
| · sidewire node (3 links, 2 sends; 8 brokers tracked, 8 targets per publish, 9 queued publishes, 4 ACK walks) with its tables | $node | tables (64 replay slots, 256 watermarks, 16 peers, 2 ACK sources): $tables |
| · one MQTT link (session, 1216-byte inbox and outbox) | $link | ×3 |
| · namebump client exchange | $exchange | |
| Stack high-water mark of the firmware's work (state kept outside) | $stack | host x86_64 proxy, painted stack |
| Stack high-water mark with the state built on the stack by value | $stack_with_state | host x86_64 proxy: why a firmware builds it in place (static) |
| **RAM: .data + .bss + state + work stack** | $ram | $(kib "$ram"); target ≤ 64 KiB: $(verdict "$ram" $((64 * 1024))) |
EOF

# keyway-embassy itself on embassy-net (src/bin/embassy.rs), same target.
embassy="$dir/$target/release/embassy"
e_code=$(( $(section .text "$embassy") + $(section .rodata "$embassy") + $(section .ARM.exidx "$embassy") + $(section .data "$embassy") ))
e_static=$(( $(section .data "$embassy") + $(section .bss "$embassy") ))
read -r e_sidewire e_sockets e_resources e_runner < <(rodata_u32 "$embassy" EMBASSY_SIZES 4)
e_state=$((e_sidewire + e_sockets + e_resources + e_runner + exchange))
cat <<EOF

| keyway-embassy image ($target, opt-level z, LTO): namebump client + sidewire node on embassy-net | Bytes | |
| --- | ---: | --- |
| Code: .text + .rodata + .ARM.exidx + .data | $e_code | $(kib "$e_code"); target ≤ 256 KiB: $(verdict "$e_code" $((256 * 1024))) |
| Static RAM: .data + .bss | $e_static | futures polled in \`_start\`'s frame, no executor |
| Sidewire (node, 3 links' sessions, 2 send packets of 1 KiB) | $e_sidewire | |
| 3 links' TCP buffers (1536 B each way) | $e_sockets | |
| embassy-net resources (8 sockets) + runner | $((e_resources + e_runner)) | |
| namebump exchange (held by the client's future) | $exchange | |
| **State in all** | $e_state | $(kib "$e_state") |
| **RAM: .data + .bss + state in all + work stack above** | $((e_static + e_state + stack)) | $(kib $((e_static + e_state + stack))); target ≤ 64 KiB: $(verdict $((e_static + e_state + stack)) $((64 * 1024))) |
EOF

# The state as this image lays it out: `_start`'s own stack frame, where
# the futures are polled (the parts above, plus the namebump client
# future's buffers and every temporary the construction passes through).
# Read from its prologue (`sub sp`), with llvm-objdump when installed.
if command -v llvm-objdump >/dev/null; then
    frame=$(llvm-objdump -d --no-show-raw-insn "$embassy" |
        awk '/<_start>:$/ { on = 1; n = 0; next }
             on && n++ < 12 && /sub(\.w)?[ \t]+sp, (sp, )?#/ { match($0, /#[0-9]+/); s += substr($0, RSTART + 1, RLENGTH - 1) }
             on && /^$/ { on = 0 }
             END { print s + 0 }')
    echo "| \`_start\`'s own stack frame in this image (the state as laid out: with the namebump future's buffers and construction temporaries) | $frame | $(kib "$frame"); with the work stack above: $(kib $((frame + stack))), target ≤ 64 KiB: $(verdict $((frame + stack)) $((64 * 1024))) |"
    # The largest frames below it (each function's own, from its
    # prologue): what polling the futures and building the state add.
    echo
    echo "| Largest stack frames in the keyway-embassy image ($target) | Bytes |"
    echo "| --- | ---: |"
    llvm-objdump -d --no-show-raw-insn -C "$embassy" |
        awk '/^[0-9a-f]+ <.*>:$/ { name = $0; sub(/^[0-9a-f]+ </, "", name); sub(/>:$/, "", name); n = 0; next }
             n++ < 12 && /sub(\.w)?[ \t]+sp, (sp, )?#/ { match($0, /#[0-9]+/); size[name] += substr($0, RSTART + 1, RLENGTH - 1) }
             END { for (f in size) if (f != "_start" && size[f] >= 2048) print size[f] "\t" f }' |
        sort -rn | head -8 |
        while IFS=$'\t' read -r bytes name; do
            name=$(printf '%s' "$name" | sed -E 's/::h[0-9a-f]{16}$//; s/_?\$LT\$/</g; s/\$GT\$/>/g; s/\$C\$/,/g;
                s/\$u20\$/ /g; s/\$u7b\$/{/g; s/\$u7d\$/}/g; s/\$u5b\$/[/g; s/\$u5d\$/]/g; s/\$LP\$/(/g;
                s/\$RP\$/)/g; s/\$u3b\$/;/g; s/\.\./::/g; s/\|/\\|/g' | cut -c1-110)
            echo "| \`$name\` | $bytes |"
        done
fi

# keyway-embassy's own host example (issue 14 part A), built the same way
# (opt-level "z", LTO) for the host: its statics are the firmware part's
# state (embassy task futures, socket memory, the stack's resources). An
# x86_64 proxy: pointers are twice a Cortex-M's, and the main task's
# future also holds the host-side command line.
host_dir=target/embassy-budget-host
cargo build --quiet --locked --release -p keyway-embassy --example host_node --target-dir "$host_dir" \
    --config 'profile.release.opt-level="z"' --config 'profile.release.lto=true' \
    --config 'profile.release.codegen-units=1' --config 'profile.release.strip=false' >&2
example="$host_dir/release/examples/host_node"
echo
echo "| keyway-embassy \`host_node\` statics (x86_64 proxy, opt-level z, LTO) | Bytes |"
echo "| --- | ---: |"
total=0
while read -r hex name; do
    bytes=$((16#$hex))
    echo "| \`$name\` | $bytes |"
    total=$((total + bytes))
done < <(nm -S -C --size-sort -r "$example" |
    awk '$3 ~ /^[bBdD]$/ && ($4 ~ /^host_node::/ || $4 ~ /^keyway_embassy::/) { print $2, $4 }')
echo "| **firmware part's statics in all** | $total |"

# The host example's whole main-thread stack (ulimit -s, 32 KiB steps)
# for one `sidewire send` acknowledged by a `keyway sidewire listen`,
# inside a network namespace of its own with one broker (as
# tests/tests/embassy_tap.rs sets it up). Needs root.
if [ "$(id -u)" -ne 0 ]; then
    echo
    echo "host_node stack: not measured (creating the namespace and TAP device needs root)"
    exit 0
fi
cargo build --quiet --locked -p keyway --bin keyway >&2
keyway=target/debug/keyway
ns="kw-emb-bench-$$"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add name tap0 mode tap
ip -n "$ns" addr add 10.77.0.1/24 dev tap0
ip -n "$ns" link set tap0 up
printf 'per_listener_settings false\nlistener 1883 10.77.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n' \
    >"$work/mosquitto.conf"
ip netns exec "$ns" /usr/sbin/mosquitto -c "$work/mosquitto.conf" &
pids+=($!)
printf '[[broker]]\nhost = "10.77.0.1"\nport = 1883\n' >"$work/pool.toml"
"$keyway" keygen --out "$work/device.key" >/dev/null
listener_pk=$("$keyway" keygen --out "$work/listener.key")
sleep 1
# Passes when the send is acknowledged on a main stack of $1 KiB.
sends_with() {
    ip netns exec "$ns" "$keyway" sidewire listen --key "$work/listener.key" \
        --brokers "$work/pool.toml" --count 1 --timeout 15 >/dev/null 2>"$work/listen.err" &
    local listener=$!
    pids+=("$listener")
    for _ in $(seq 50); do grep -q listening "$work/listen.err" && break; sleep 0.1; done
    local rc=0
    (ulimit -s "$1"; exec ip netns exec "$ns" "$example" --tap tap0 --addr 10.77.0.2/24 \
        --gateway 10.77.0.1 sidewire send "$listener_pk" budget --key "$work/device.key" \
        --brokers "$work/pool.toml" --timeout 5) >/dev/null 2>&1 || rc=$?
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    return "$rc"
}
lo=1 hi=32 # in 32 KiB steps: up to 1 MiB
sends_with $((hi * 32)) || { echo "host_node sidewire send failed even on a 1 MiB stack" >&2; exit 1; }
while [ "$lo" -lt "$hi" ]; do
    mid=$(((lo + hi) / 2))
    if sends_with $((mid * 32)); then hi=$mid; else lo=$((mid + 1)); fi
done
echo
echo "| keyway-embassy \`host_node sidewire send\`, acknowledged (x86_64 proxy, opt-level z, LTO) | Main-thread stack |"
echo "| --- | ---: |"
echo "| smallest \`ulimit -s\` that passes (32 KiB steps; process start-up and the command line included) | $((hi * 32)) KiB |"
