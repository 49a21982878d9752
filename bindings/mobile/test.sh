#!/usr/bin/env bash
# keyway-mobile's tests (issue 15), run by tests/run.sh; works on a fresh
# Debian machine (installs what it needs first):
#   - builds the host cdylib and the `keyway` CLI (the tokio peers);
#   - generates the Kotlin bindings with the crate's own uniffi-bindgen,
#     compiles them with the Kotlin tests (bindings/mobile/tests/kotlin)
#     and runs them on the JVM (JNA loads the .so): names against a
#     `keyway namebump serve`, sidewire both ways with `keyway sidewire`
#     through a private mosquitto, a Drayer mirror of `keyway drayer serve`,
#     a cancelled send, every failure as a KeywayException;
#   - runs the README's Kotlin example (examples/names.main.kts) with kotlinc -script;
#   - generates the Swift bindings and module map and checks that every
#     exported item is in them. They are NOT compiled here: there is no
#     Swift toolchain for this Debian.
# Network: package installs only; every test talks to loopback.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_INCREMENTAL=0

# The Kotlin compiler from npm, pinned; cached under target/.
KOTLIN_VERSION=2.4.20
kotlin_home=target/kotlin/node_modules/kotlin-compiler
out=target/mobile-bindings

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
need_apt=()
[ -f /usr/share/java/jna.jar ] || need_apt+=(libjna-java)
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v npm >/dev/null || need_apt+=(npm)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need_apt+=(mosquitto)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "mobile: installing ${need_apt[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! grep -q "\"version\": \"$KOTLIN_VERSION\"" "$kotlin_home/package.json" 2>/dev/null; then
    echo "mobile: installing kotlin-compiler $KOTLIN_VERSION from npm into target/kotlin" >&2
    mkdir -p target/kotlin
    npm install --silent --save-exact --no-audit --no-fund --prefix target/kotlin "kotlin-compiler@$KOTLIN_VERSION"
fi
kotlinc="$kotlin_home/bin/kotlinc"
coroutines="$kotlin_home/lib/kotlinx-coroutines-core-jvm.jar"
stdlib="$kotlin_home/lib/kotlin-stdlib.jar"
jna=/usr/share/java/jna.jar
for f in "$kotlinc" "$coroutines" "$stdlib" "$jna"; do
    [ -e "$f" ] || { echo "mobile: $f is missing" >&2; exit 1; }
done
# Debian's JNA loads its JNI part from the system, not from the jar.
jnidispatch=$(find /usr/lib -name 'libjnidispatch*.so' -print -quit 2>/dev/null || true)
jni_dir=${jnidispatch:+$(dirname "$jnidispatch")}

step() { printf '\n== mobile: %s\n' "$*"; }

step "build the host library, its uniffi-bindgen and the keyway CLI"
# Two builds: one would unify features, and the library must be the
# client-only one a phone links.
cargo build --locked -p keyway
cargo build --locked -p keyway-mobile --features bindgen --bin uniffi-bindgen
bindgen=target/debug/uniffi-bindgen
# The library last, without the generator's crates, as an app links it.
cargo build --locked -p keyway-mobile --lib
lib=target/debug/libkeyway_mobile.so

step "the mobile library takes no server crate (the client-only ladder)"
if cargo tree --locked -p keyway-mobile -e normal | grep -E '(sqlx|axum|prometheus-client|mime_guess) v'; then
    echo "keyway-mobile depends on a server crate (above)" >&2
    exit 1
fi

step "generate the Kotlin and Swift bindings"
rm -rf "$out/kotlin" "$out/swift"
"$bindgen" generate --no-format --language kotlin --out-dir "$out/kotlin" "$lib"
"$bindgen" generate --no-format --language swift --out-dir "$out/swift" "$lib"
kt="$out/kotlin/keyway/keyway_mobile.kt"
swift="$out/swift/Keyway.swift"

step "Swift: the bindings and module map are complete (not compiled: no Swift toolchain here)"
for f in "$swift" "$out/swift/KeywayFFI.h" "$out/swift/KeywayFFI.modulemap"; do
    [ -s "$f" ] || { echo "missing $f" >&2; exit 1; }
done
grep -q 'module KeywayFFI' "$out/swift/KeywayFFI.modulemap"
# Every function the library exports is declared in the header and
# called from the Swift (and the Kotlin) bindings.
symbols=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -E '^uniffi_keyway_mobile_(fn|checksum)_' | sort -u)
[ -n "$symbols" ] || { echo "no uniffi symbols in $lib" >&2; exit 1; }
missing=0
for s in $symbols; do
    for f in "$out/swift/KeywayFFI.h" "$swift" "$kt"; do
        grep -q "\b$s\b" "$f" || { echo "$s is not in $f" >&2; missing=1; }
    done
done
# The API's names, in each language's casing (the Kotlin ones are a
# contract), compared with the bindings' whitespace removed.
swift_names=(
    "class Keypair" "static func generate() -> Keypair" "static func fromPrivateHex(hex: String) throws -> Keypair"
    "func publicKeyHex() -> String" "func privateHex() -> String"
    "class NamebumpClient" "convenience init(server: String, serverPkHex: String) throws"
    "func put(name: String, value: Data, owner: Keypair) async throws"
    "func get(name: String) async throws -> Data?" "func delete(name: String, owner: Keypair) async throws"
    "func usage(owner: Keypair) async throws -> Usage" "struct Usage"
    "class SidewireNode" "convenience init(keypair: Keypair, poolToml: String, listener: MessageListener) throws"
    "func start() async throws" "func send(destPkHex: String, message: Data, timeoutMs: UInt64) async throws"
    "protocol MessageListener" "func onMessage(fromPkHex: String, message: Data)"
    "class DrayerStream" "static func create(path: String) throws -> DrayerStream"
    "static func \`open\`(path: String) throws -> DrayerStream"
    "static func mirror(path: String, publicKeyB64: String) throws -> DrayerStream" "func publicKeyB64() -> String"
    "func set(key: String, value: Data) throws" "func get(key: String) throws -> Data?"
    "func delete(key: String) throws" "func keys() throws -> [String]" "func sync(url: String) async throws"
    "enum KeywayError" "case RejectedAtQuota(message: String)" "case WouldBump(message: String)"
    "case NotOwner(message: String)" "case ClockSkew(message: String)" "case Timeout(message: String)"
    "case InvalidInput(message: String)" "case Network(message: String)" "case ServerError(message: String)"
    "case VerificationFailed(message: String)"
)
squeezed=$(tr -d ' \t' < "$swift")
for n in "${swift_names[@]}"; do
    grep -qF -- "${n//[[:space:]]/}" <<< "$squeezed" || { echo "Swift: '$n' is not in $swift" >&2; missing=1; }
done
kotlin_names=(
    "package keyway" "open class Keypair" "fun \`generate\`()" "fun \`fromPrivateHex\`(\`hex\`: kotlin.String)"
    "open class NamebumpClient" "constructor(\`server\`: kotlin.String, \`serverPkHex\`: kotlin.String)"
    "suspend fun \`put\`(\`name\`: kotlin.String, \`value\`: kotlin.ByteArray, \`owner\`: Keypair)"
    "open class SidewireNode" "interface MessageListener" "open class DrayerStream"
    "sealed class KeywayException" "class VerificationFailed"
)
for n in "${kotlin_names[@]}"; do
    grep -qF "$n" "$kt" || { echo "Kotlin: '$n' is not in $kt" >&2; missing=1; }
done
[ "$missing" -eq 0 ]
echo "$(echo "$symbols" | wc -l) exported functions and ${#swift_names[@]} API names present"

step "compile the Kotlin bindings and tests"
"$kotlinc" -nowarn -cp "$jna:$coroutines" -d "$out/kotlin-tests.jar" "$kt" bindings/mobile/tests/kotlin/*.kt

scratch=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

step "start a private mosquitto on loopback"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
broker_port=""
for _ in 1 2 3 4 5; do
    port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$scratch/mosquitto.conf"
    "$mosquitto_bin" -c "$scratch/mosquitto.conf" > "$scratch/mosquitto.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then broker_port=$port; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$broker_port" ] && break
    kill "$pid" 2>/dev/null || true
done
[ -n "$broker_port" ] || { echo "mosquitto did not start: $(cat "$scratch/mosquitto.log")" >&2; exit 1; }

step "Kotlin tests on the JVM"
export KEYWAY_BIN="$root/target/debug/keyway" KEYWAY_TEST_DIR="$scratch" BROKER_PORT="$broker_port"
timeout 600 java -Djna.library.path="$root/target/debug" ${jni_dir:+-Djna.boot.library.path="$jni_dir"} \
    -cp "$out/kotlin-tests.jar:$stdlib:$jna:$coroutines" MainKt "$@"

step "the README's Kotlin example is examples/names.main.kts, and runs (kotlinc -script)"
awk '/^## Mobile \(Kotlin, Swift\)/ {m = 1} m && /^```kotlin/ {f = 1; next} f && /^```/ {exit} f' README.md \
    | diff - bindings/mobile/examples/names.main.kts \
    || { echo "README.md's Kotlin example differs from bindings/mobile/examples/names.main.kts" >&2; exit 1; }
"$KEYWAY_BIN" namebump serve --listen 127.0.0.1:0 --db "sqlite:$scratch/example.db" \
    --key "$scratch/example.key" > "$scratch/example-server.out" 2>&1 &
pids+=("$!")
for _ in $(seq 300); do grep -q '^server_pk=' "$scratch/example-server.out" && break; sleep 0.1; done
NAMEBUMP_SERVER=$(sed -n 's/^listening=//p' "$scratch/example-server.out" | head -1)
NAMEBUMP_SERVER_PK=$(sed -n 's/^server_pk=//p' "$scratch/example-server.out")
[ -n "$NAMEBUMP_SERVER_PK" ] || { echo "the example's server did not start" >&2; exit 1; }
export NAMEBUMP_SERVER NAMEBUMP_SERVER_PK
example=$(JAVA_OPTS="-Djna.library.path=$root/target/debug ${jni_dir:+-Djna.boot.library.path=$jni_dir}" \
    timeout 300 "$kotlinc" -nowarn -cp "$out/kotlin-tests.jar:$jna:$coroutines" \
    -script bindings/mobile/examples/names.main.kts)
echo "$example"
[ "$(echo "$example" | head -1)" = "my-phone = hello" ] || { echo "unexpected example output" >&2; exit 1; }
[ "$(echo "$example" | tail -1)" = "after delete: null" ] || { echo "unexpected example output" >&2; exit 1; }
echo "mobile: all passed"
