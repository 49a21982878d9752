"""A sidewire 0.1.9 reference Router as an interop peer, on loopback brokers
only (never the bundled public pool).

stdin: {"secret": hex, "brokers": [[host, port], ...], "send_to": pub hex or null,
        "hints": [[host, port], ...], "messages": [str, ...], "expect": int,
        "timeout": seconds}
stdout: a line "ready <pub hex>" once started, then one JSON line
        {"sent": [send results], "received": [{"msg": str, "src": hex}]}
"""
import asyncio
import json
import sys
import time

# aionetiface's default interface learns its source address with a UDP
# connect() to 8.8.8.8 (no packet is sent); use a loopback route instead,
# as shared/reference/sidewire/demo_two_routers.py does.
import aionetiface.nic.default_interface as _di
from aionetiface import IP4, IP6
from aionetiface.net.ip_range import IPRange
from aionetiface.nic.route.route import Route


def _loopback_routes(nic):
    lo = IPRange("127.0.0.1", af=IP4)
    # The "external" slot is a label the Route validator wants; nothing connects to it.
    return {IP4: Route(IP4, [lo], [IPRange("8.8.8.8", af=IP4)], nic)}


_di.get_default_routes = _loopback_routes

from ecdsa import SECP256k1, SigningKey  # noqa: E402
from aionetiface.utility.signing import Signing  # noqa: E402
from sidewire import Router  # noqa: E402


async def main():
    req = json.loads(sys.stdin.readline())
    sk = SigningKey.from_string(bytes.fromhex(req["secret"]), curve=SECP256k1)
    kp = Signing(sk, sk.get_verifying_key())
    servers = {IP4: {h: {"af": 2, "host": h, "port": p} for h, p in req["brokers"]}, IP6: {}}
    received = []
    got_all = asyncio.Event()

    async def handler(msg, src_pk, queue_id, client):
        src = src_pk.hex() if isinstance(src_pk, (bytes, bytearray)) else str(src_pk)
        received.append({"msg": msg, "src": src})
        if len(received) >= req["expect"]:
            got_all.set()

    router = Router(kp, msg_handler=handler, get_time=time.time, servers=servers)
    await router.start()
    print("ready", kp.public_key_hex, flush=True)
    sent = []
    try:
        if req.get("send_to"):
            hints = [{"host": h, "port": p, "af": 2} for h, p in req.get("hints", [])]
            pipe = await router.pipe(req["send_to"], hint_brokers=hints or None)
            for m in req["messages"]:
                sent.append(bool(await pipe.send(m.encode(), timeout=4)))
        if req["expect"] > 0:
            try:
                await asyncio.wait_for(got_all.wait(), req["timeout"])
            except asyncio.TimeoutError:
                pass
            # The reference queues each ACK for its dispatcher's next scan
            # (every 0.5 s) and close() drops what is queued: without this
            # the last message's sender may never see its ACK.
            await asyncio.sleep(1.5)
        else:
            await asyncio.sleep(1)
    finally:
        print(json.dumps({"sent": sent, "received": received}), flush=True)
        await router.close()


asyncio.run(main())
