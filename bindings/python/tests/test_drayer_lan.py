"""startLocalDiscovery() on the real DrayerUDP group and port
(224.7.130.8:15723), inside a network namespace this test creates (an
unprivileged user namespace with only loopback, multicast routed to it), so
no datagram reaches a real network: a mirror that knows only the owner's
public key finds it, and pulls its records over HTTP from where the
answer came from."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_mirror_finds_its_owner_through_start_local_discovery(tmp_path):
    unshare = shutil.which("unshare")
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None)
    if unshare is None or ip is None:
        pytest.fail("unshare (util-linux) and ip (iproute2) make this test's network namespace")
    node = [sys.executable, os.path.join(HERE, "drayer_lan_node.py")]
    # `src 127.0.0.1`: without it Linux sends multicast over lo from
    # 0.0.0.0, a source discovery answers nothing to (it only answers
    # loopback and attached subnets, issue 11 item 7); on a real LAN the
    # source is the interface's address.
    script = (
        'set -e; "$IP" link set lo up; "$IP" route add 224.0.0.0/4 dev lo src 127.0.0.1; '
        '"$@" owner "$DIR" > "$DIR/owner.out" & owner=$!; trap "kill $owner" EXIT; '
        'for i in $(seq 100); do [ -s "$DIR/owner.out" ] && break; sleep 0.1; done; '
        '"$@" mirror "$DIR" "$(head -n1 "$DIR/owner.out")"'
    )
    done = subprocess.run(
        [unshare, "--user", "--map-root-user", "--net", "sh", "-c", script, "sh"] + node,
        env=dict(os.environ, DIR=str(tmp_path), IP=ip),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, "namespace or nodes failed (unprivileged user namespaces disabled?):\n" + done.stderr
    assert done.stdout.strip() == "5", done.stdout + done.stderr
