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
#   (This first table measures the machines alone.)
# - keyway-embassy on embassy-net (src/bin/embassy.rs), same target: RAM
#   is .data + .bss plus the deepest stack from `_start`, read from the
#   image's machine code by tests/stack-depth.py (llvm-objdump's
#   disassembly; stable Rust has no stack-size output). `_start`'s frame
#   holds the futures' state (the image polls its two tasks by hand).
#   The stand-in Ethernet driver's frames count; a real driver's own
#   buffers (DMA descriptors) would come on top.
# - keyway-embassy's host example: its statics (x86_64), and the smallest
#   main-thread stack for one acknowledged send (needs root).
#
# Needs binutils, llvm-objdump and python3.
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
for tool in size readelf nm od c++filt llvm-objdump python3; do
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

# keyway-embassy itself on embassy-net (src/bin/embassy.rs), same target:
# its RAM is its statics (.data + .bss: the node's tables, the links' TCP
# buffers, embassy-net's resources) and the deepest stack from `_start`,
# read from the image's machine code by tests/stack-depth.py (stable Rust
# has no stack-size output): `_start`'s own frame, where the futures'
# state lives (the sidewire node, its links and sends; the namebump
# client's exchange and buffers), and the deepest call path below it.
embassy="$dir/$target/release/embassy"
e_code=$(( $(section .text "$embassy") + $(section .rodata "$embassy") + $(section .ARM.exidx "$embassy") + $(section .data "$embassy") ))
e_data=$(section .data "$embassy")
e_bss=$(section .bss "$embassy")
e_static=$((e_data + e_bss))
read -r e_sidewire e_tables e_sockets e_resources e_runner < <(rodata_u32 "$embassy" EMBASSY_SIZES 5)
declare -A depth
path=()
while IFS= read -r line; do
    case $line in
        frame=*) path+=("${line#frame=}") ;;
        *=*) depth[${line%%=*}]=${line#*=} ;;
    esac
done < <(llvm-objdump -d --no-show-raw-insn "$embassy" | python3 tests/stack-depth.py _start)
e_stack=${depth[deepest]}
e_ram=$((e_static + e_stack))
start_frame=${path[0]%% *}
cat <<EOF

| keyway-embassy image ($target, opt-level z, LTO): namebump client + sidewire node on embassy-net | Bytes | |
| --- | ---: | --- |
| Code: .text + .rodata + .ARM.exidx + .data | $e_code | $(kib "$e_code"); target ≤ 256 KiB: $(verdict "$e_code" $((256 * 1024))) |
| Static RAM: .data + .bss | $e_static | .data $e_data, .bss $e_bss |
| · the node's tables (64 replay slots, 256 watermarks, 16 peers, 2 ACK sources) | $e_tables | static |
| · 3 links' TCP buffers (1 KiB each way) | $e_sockets | static |
| · embassy-net resources (6 sockets) | $e_resources | static |
| Deepest stack from \`_start\` (tests/stack-depth.py, read from the image's code) | $e_stack | $(kib "$e_stack"); ${depth[unresolved]} indirect calls not followed (waker and socket vtables), ${depth[recursive]} recursive functions counted once |
| · \`_start\`'s own frame: the futures' state | $start_frame | |
| · · sidewire (node without its tables, 3 links' MQTT sessions with 1216-byte inbox and outbox, 2 send packets of 1216 B) | $e_sidewire | |
| · · embassy-net runner | $e_runner | |
| · · the rest: the namebump client's future (its one-stream exchange, four request-sized buffers, a 512-byte TCP window), endpoints, key | $((start_frame - e_sidewire - e_runner)) | |
| · the deepest call path below it (listed below) | $((e_stack - start_frame)) | |
| **RAM: .data + .bss + deepest stack** | $e_ram | $(kib "$e_ram"); target ≤ 64 KiB: $(verdict "$e_ram" $((64 * 1024))) |
EOF
echo
echo "| Deepest call path in the keyway-embassy image ($target) | Frame bytes |"
echo "| --- | ---: |"
for entry in "${path[@]}"; do
    bytes=${entry%% *}
    name=$(printf '%s' "${entry#* }" | c++filt | sed -E 's/::h[0-9a-f]{16}$//; s/\|/\\|/g' | cut -c1-110)
    echo "| \`$name\` | $bytes |"
done

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
