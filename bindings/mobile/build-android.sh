#!/usr/bin/env bash
# Builds the Android library: libkeyway_mobile.so for each ABI (cargo-ndk,
# profile `mobile`), the Kotlin bindings (this crate's uniffi-bindgen), and
# an AAR holding both (jni/<abi>/, classes.jar). NOT run by the tests: it
# needs the Android NDK and SDK, which this Debian test machine does not
# have. Needs: rustup targets (added below), `cargo install cargo-ndk`,
# ANDROID_NDK_HOME, ANDROID_HOME (for android.jar), kotlinc, JNA's AAR
# (the app depends on net.java.dev.jna:jna:5.x@aar itself).
#
#     ANDROID_NDK_HOME=… ANDROID_HOME=… bindings/mobile/build-android.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${1:-target/android}
api=${ANDROID_API:-24}
abis=(arm64-v8a armeabi-v7a x86_64)
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the NDK}"
: "${ANDROID_HOME:?set ANDROID_HOME to the SDK (android.jar)}"
command -v cargo-ndk >/dev/null || { echo "cargo install cargo-ndk" >&2; exit 1; }

rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
rm -rf "$out" && mkdir -p "$out/aar/jni" "$out/kotlin" "$out/classes"
args=()
for abi in "${abis[@]}"; do args+=(-t "$abi"); done
cargo ndk "${args[@]}" --platform "$api" -o "$out/aar/jni" \
    build --locked --profile mobile -p keyway-mobile --lib

# The bindings come from the host build of the same source and uniffi
# version: the metadata does not depend on the target.
cargo build --locked -p keyway-mobile --features bindgen --bin uniffi-bindgen
cargo build --locked -p keyway-mobile --lib
target/debug/uniffi-bindgen generate --language kotlin --out-dir "$out/kotlin" \
    target/debug/libkeyway_mobile.so

platform_jar=$(ls -d "$ANDROID_HOME"/platforms/android-*/android.jar | sort -V | tail -1)
kotlinc -cp "$platform_jar:${JNA_JAR:?set JNA_JAR to jna.jar (for compiling only)}:${COROUTINES_JAR:?set COROUTINES_JAR}" \
    -d "$out/classes" "$out/kotlin/keyway/keyway_mobile.kt"
(cd "$out/classes" && jar cf ../aar/classes.jar .)
cat > "$out/aar/AndroidManifest.xml" <<XML
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="keyway">
    <uses-sdk android:minSdkVersion="$api"/>
    <uses-permission android:name="android.permission.INTERNET"/>
</manifest>
XML
(cd "$out/aar" && zip -qr ../keyway-mobile.aar AndroidManifest.xml classes.jar jni)
echo "$out/keyway-mobile.aar"
