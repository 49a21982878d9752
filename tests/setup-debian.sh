#!/usr/bin/env bash
# Installs what Keyway needs on a fresh Debian machine, then runs the given
# command (if any) with the Rust toolchain on PATH:
#
#     bash tests/setup-debian.sh cargo run --release -p keyway -- demo
#
# Idempotent and quiet when everything is already there.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
# Private MQTT brokers for the sidewire tests.
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need_apt+=(mosquitto)
# ip: the Python LAN-discovery test configures a network namespace of its own.
[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || command -v ip >/dev/null || need_apt+=(iproute2)
if ! command -v python3 >/dev/null; then
    need_apt+=(python3 python3-venv python3-dev)
else
    # The reference peers need venv and, to build netifaces, Python.h.
    python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
    python3 - <<'PY' || need_apt+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
        | sh -s -- -y --profile minimal --component rustfmt,clippy >/dev/null
fi
for component in rustfmt clippy; do
    cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done

if [ $# -gt 0 ]; then
    exec "$@"
fi
