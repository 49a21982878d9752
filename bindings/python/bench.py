"""namebump put and get round trips per second from Python, through
whichever `namebump` package the interpreter imports (Keyway's wheel or
the reference 0.0.16), against one server. Not a test.

    python bench.py HOST PORT SERVER_PK_HEX [ROUNDS]

Prints one JSON line: {"package", "puts_per_s", "gets_per_s", "rounds"}.
Sequential calls from one client: each is a full round trip (sign,
encrypt, send, wait, decrypt)."""

import asyncio
import json
import sys
import time

import namebump


async def main():
    host, port, pk = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    kp = namebump.Keypair.generate()
    client = await namebump.Client((host, port), pk)
    name = "bench_" + kp.vkc.hex()[:12]
    await client.put(name, b"warm-up", kp)
    started = time.perf_counter()
    for i in range(rounds):
        await client.put(name, b"value %d" % i, kp)
    puts = rounds / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(rounds):
        got = await client.get(name)
    gets = rounds / (time.perf_counter() - started)
    assert got.value == b"value %d" % (rounds - 1), got.value
    await client.delete(name, kp)
    package = "keyway" if hasattr(namebump, "RequestRefused") else "reference"
    print(json.dumps({"package": package, "puts_per_s": round(puts, 1), "gets_per_s": round(gets, 1), "rounds": rounds}))


asyncio.run(main())
