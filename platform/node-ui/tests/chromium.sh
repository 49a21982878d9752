#!/usr/bin/env bash
# The UI session in a real headless Chromium (issue 16, item 7), run by
# tests/run.sh; works on a fresh Debian machine (installs what it needs):
# Debian's chromium, and playwright-core from npm into target/ui-test.
# tests/chromium.mjs starts the ui_demo example on 127.0.0.1:0 and drives
# the page: a wrong token is refused; the right one pairs and the page
# shows the node's status; a replayed, an altered and a reordered sealed
# frame each close the session; a used token pairs no second page; a page
# of another origin gets no WebSocket. Network: package installs only; the
# browser talks to loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_INCREMENTAL=0

PLAYWRIGHT_VERSION=1.65.2
prefix=target/ui-test

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "node-ui: installing ${need_apt[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$prefix/node_modules/playwright-core/package.json" 2>/dev/null; then
    echo "node-ui: installing playwright-core $PLAYWRIGHT_VERSION from npm into $prefix" >&2
    mkdir -p "$prefix"
    npm install --silent --save-exact --no-audit --no-fund --prefix "$prefix" "playwright-core@$PLAYWRIGHT_VERSION"
fi

cargo build --locked -p keyway-node-ui --example ui_demo
# The script imports playwright-core from target/ui-test, so it runs from there.
cp platform/node-ui/tests/chromium.mjs "$prefix/chromium.mjs"
node "$prefix/chromium.mjs" "$root/target/debug/examples/ui_demo" "$root/$prefix"
