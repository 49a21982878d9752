"""The wheel's sidewire: the seed's example shape (Router with a handler,
``router.pipe(dest_hex)``, ``pipe.send``) exchanging messages with the
reference sidewire 0.1.9 Router, both ways, over a private mosquitto
broker on loopback."""

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time

import pytest
from ecdsa import SECP256k1, SigningKey

from namebump import Keypair
from sidewire import Router

from conftest import ROOT, _need

# Three brokers: the reference subscribes at ⌊log2 n⌋ of them, none in a
# one-broker pool.
BROKER_IPS = ["127.0.0.9", "127.0.0.10", "127.0.0.11"]


# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "probe").
_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"probe"


def _answers_mqtt(ip, port):
    """Whether the broker completes a CONNECT: an accepted TCP connection
    alone can come before the broker serves it."""
    with socket.create_connection((ip, port), timeout=0.5) as s:
        s.sendall(_CONNECT)
        connack = b""
        while len(connack) < 4:
            chunk = s.recv(4 - len(connack))
            if not chunk:
                return False
            connack += chunk
        return connack == bytes([0x20, 2, 0, 0])


def _start_broker(binary, ip, tmp):
    with socket.socket() as s:
        s.bind((ip, 0))
        port = s.getsockname()[1]
    conf = pathlib.Path(tmp) / "mosquitto-{0}.conf".format(ip)
    conf.write_text("per_listener_settings false\nlistener {0} {1}\nallow_anonymous true\n"
                    "persistence false\nlog_dest none\nset_tcp_nodelay true\n".format(port, ip))
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            if _answers_mqtt(ip, port):
                return process, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("mosquitto on {0} did not start".format(ip))
        time.sleep(0.05)


@pytest.fixture
def brokers():
    binary = next(p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.path.exists(p))
    with tempfile.TemporaryDirectory() as tmp:
        started = [_start_broker(binary, ip, tmp) for ip in BROKER_IPS]
        yield [(ip, port) for ip, (_, port) in zip(BROKER_IPS, started)]
        for process, _ in started:
            process.kill()
            process.wait()


def test_messages_both_ways_with_the_reference_router(brokers):
    reference_python = _need("REFERENCE_PYTHON", "the reference venv's python")
    ref_key = SigningKey.generate(curve=SECP256k1)
    ref_pub = ref_key.get_verifying_key().to_string("compressed").hex()
    servers = {socket.AF_INET: {ip: {"af": 2, "host": ip, "port": port} for ip, port in brokers}}

    async def main():
        received = []
        got = asyncio.Event()

        async def on_msg(msg, src_pk, queue_id, client):
            received.append((msg, src_pk.hex()))
            got.set()

        kp = Keypair.generate()
        async with Router(kp, msg_handler=on_msg, get_time=time.time, servers=servers) as router:
            request = {
                "secret": ref_key.to_string().hex(),
                "brokers": [[ip, port] for ip, port in brokers],
                # No hints, as in the seed's example: the reference
                # publishes on whichever broker of its ranking connected
                # first, and this Router listens on all of its top 10.
                "hints": [],
                "send_to": kp.vkc.hex(),
                "messages": ["hello from the reference"],
                "expect": 1,
                "timeout": 20,
            }
            peer = subprocess.Popen(
                [reference_python, str(ROOT / "tests" / "interop" / "sidewire_peer.py")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                env=dict(os.environ, PYTHONNOUSERSITE="1"),
            )
            peer.stdin.write(json.dumps(request) + "\n")
            peer.stdin.flush()
            loop = asyncio.get_running_loop()
            ready = await asyncio.wait_for(loop.run_in_executor(None, peer.stdout.readline), 30)
            assert ready.strip() == "ready " + ref_pub
            pipe = await router.pipe(ref_pub)
            sent = await pipe.send(b"hello from keyway", timeout=10)
            await asyncio.wait_for(got.wait(), 20)
            out, _ = await loop.run_in_executor(None, peer.communicate)
            result = json.loads(out.strip().splitlines()[-1])
            return sent, received, result

    sent, received, result = asyncio.run(main())
    assert sent == len(b"hello from keyway")
    assert received == [(b"hello from the reference", ref_pub)]
    assert result["sent"] == [True]
    assert [m["msg"] for m in result["received"]] == ["hello from keyway"]


def test_router_requires_get_time_and_checks_destinations():
    with pytest.raises(ValueError):
        Router(Keypair.generate())

    async def main():
        router = Router(Keypair.generate(), get_time=time.time, servers={})
        with pytest.raises(RuntimeError):
            await router.pipe("02" * 33)

    asyncio.run(main())


async def _live_tasks_down_to(at_most, deadline_s=30):
    """Polls the native module's count of running awaitable tasks until it
    is at most `at_most`; returns the last count seen."""
    from keyway import _native

    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while _native._live_tasks() > at_most and loop.time() < end:
        await asyncio.sleep(0.05)
    return _native._live_tasks()


def _one_broker(brokers):
    ip, port = brokers[0]
    return {socket.AF_INET: {ip: {"af": 2, "host": ip, "port": port}}}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_nan_infinite_or_negative_seconds_are_a_value_error(brokers, bad):
    """Timeouts, expiries and graces that are not a finite, non-negative
    number of seconds raise ValueError (they were a Rust panic, or were
    silently clamped), and so does a get_time that returns one."""
    dest = Keypair.generate().vkc.hex()

    async def main():
        async with Router(Keypair.generate(), get_time=time.time, servers=_one_broker(brokers)) as router:
            pipe = await router.pipe(dest)
            with pytest.raises(ValueError):
                # wait_for: an infinite timeout used to become an hour.
                await asyncio.wait_for(pipe.send(b"x", timeout=bad), 30)
            with pytest.raises(ValueError):
                await router.pipe(dest, expiry=bad)
            with pytest.raises(ValueError):
                await router._native.close(bad)
        with pytest.raises(ValueError):
            await Router(Keypair.generate(), get_time=lambda: bad, servers=_one_broker(brokers)).start()

    asyncio.run(main())


def test_cancelling_a_send_stops_the_rust_task(brokers):
    """A send to a destination nobody serves waits (here) an hour for its
    ACK; cancelling the awaitable must abort the Rust task behind it."""
    from keyway import _native

    dest = Keypair.generate().vkc.hex()

    async def main():
        async with Router(Keypair.generate(), get_time=time.time, servers=_one_broker(brokers)) as router:
            pipe = await router.pipe(dest)
            assert await _live_tasks_down_to(0) == 0, "a task of an earlier test still runs"
            send = asyncio.ensure_future(pipe.send(b"into the void", timeout=3600))
            await asyncio.sleep(0.5)
            assert not send.done()
            assert _native._live_tasks() == 1
            send.cancel()
            with pytest.raises(asyncio.CancelledError):
                await send
            assert await _live_tasks_down_to(0) == 0, "the cancelled send's Rust task still runs"

    asyncio.run(main())
