"""Two sidewire 0.1.9 reference Routers in one process, through the given
loopback brokers: delivery latency (send -> handler), send -> ACK, and
delivered messages per second with concurrent senders. Mirrors
tests/benches/sidewire.rs. stdin: {"brokers": [[host, port]...], "seconds": s,
"senders": n}; stdout: one JSON line."""
import asyncio
import json
import sys
import time

import aionetiface.nic.default_interface as _di
from aionetiface import IP4, IP6
from aionetiface.net.ip_range import IPRange
from aionetiface.nic.route.route import Route


def _loopback_routes(nic):
    lo = IPRange("127.0.0.1", af=IP4)
    return {IP4: Route(IP4, [lo], [IPRange("8.8.8.8", af=IP4)], nic)}


_di.get_default_routes = _loopback_routes

from aionetiface.utility.signing import Signing  # noqa: E402
from sidewire import Router  # noqa: E402
from sidewire.broker_hint_cache import client_to_hint  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(int(len(values) * q), len(values) - 1)] if values else 0.0


async def main():
    req = json.loads(sys.stdin.readline())
    servers = {IP4: {h: {"af": 2, "host": h, "port": p} for h, p in req["brokers"]}, IP6: {}}
    delivery = []
    count = [0]

    async def handler(msg, src_pk, queue_id, client):
        count[0] += 1
        sent = float(msg.split(" ", 1)[0])
        delivery.append(time.perf_counter() - sent)

    a, b = Signing.keypair(), Signing.keypair()
    ra = Router(a, get_time=time.time, servers=servers)
    rb = Router(b, msg_handler=handler, get_time=time.time, servers=servers)
    await ra.start()
    await rb.start()
    hints = [h for h in (client_to_hint(c) for c in rb.protected_clients) if h]
    pipe = await ra.pipe(b.public_key_hex, hint_brokers=hints)
    await pipe.send(("%f warm" % time.perf_counter()).encode(), timeout=4)

    half = req["seconds"] / 2
    delivery.clear()
    round_trips, failed = [], 0
    end = time.perf_counter() + half
    while time.perf_counter() < end:
        t = time.perf_counter()
        ok = await pipe.send(("%f one" % t).encode(), timeout=4)
        round_trips.append(time.perf_counter() - t)
        failed += 0 if ok else 1
    one = list(delivery)

    before = count[0]
    started = time.perf_counter()
    end = started + half

    async def sender():
        nonlocal failed
        while time.perf_counter() < end:
            if not await pipe.send(("%f many" % time.perf_counter()).encode(), timeout=4):
                failed += 1

    await asyncio.gather(*(sender() for _ in range(req["senders"])))
    rate = (count[0] - before) / (time.perf_counter() - started)
    print(json.dumps({
        "delivery_p50_ms": pct(one, 0.5) * 1000, "delivery_p99_ms": pct(one, 0.99) * 1000,
        "ack_p50_ms": pct(round_trips, 0.5) * 1000, "ack_p99_ms": pct(round_trips, 0.99) * 1000,
        "rate": rate, "failed": failed,
    }), flush=True)
    await ra.close()
    await rb.close()


asyncio.run(main())
