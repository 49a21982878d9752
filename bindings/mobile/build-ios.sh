#!/usr/bin/env bash
# Builds the iOS XCFramework: the static library (profile `mobile`) for
# devices and both simulators, the Swift bindings and module map (this
# crate's uniffi-bindgen), and Keyway.xcframework with the headers; add
# it and Keyway.swift to the Xcode project. NOT run by the tests: it
# needs macOS with Xcode (xcodebuild, lipo), which this Debian machine is
# not.
#
#     bindings/mobile/build-ios.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${1:-target/ios}
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
[ "$(uname)" = Darwin ] || { echo "build-ios.sh needs macOS with Xcode" >&2; exit 1; }

rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
    cargo build --locked --profile mobile -p keyway-mobile --lib --target "$t"
done
rm -rf "$out" && mkdir -p "$out/headers" "$out/swift" "$out/sim"

cargo build --locked -p keyway-mobile --features bindgen --bin uniffi-bindgen
cargo build --locked -p keyway-mobile --lib
target/debug/uniffi-bindgen generate --language swift --out-dir "$out/swift" \
    target/debug/libkeyway_mobile.dylib
cp "$out/swift/KeywayFFI.h" "$out/headers/"
# Xcode looks for the module map under this name in a framework's headers.
cp "$out/swift/KeywayFFI.modulemap" "$out/headers/module.modulemap"

# One library per platform: the two simulator architectures together.
lipo -create target/aarch64-apple-ios-sim/mobile/libkeyway_mobile.a \
    target/x86_64-apple-ios/mobile/libkeyway_mobile.a -output "$out/sim/libkeyway_mobile.a"
xcodebuild -create-xcframework \
    -library target/aarch64-apple-ios/mobile/libkeyway_mobile.a -headers "$out/headers" \
    -library "$out/sim/libkeyway_mobile.a" -headers "$out/headers" \
    -output "$out/Keyway.xcframework"
echo "$out/Keyway.xcframework and $out/swift/Keyway.swift"
