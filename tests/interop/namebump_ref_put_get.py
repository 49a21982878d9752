"""The namebump 0.0.16 reference Client, unmodified: one PUT and one GET
against a server under test on 127.0.0.1. Reads {"port": int, "server_pk":
hex, "name": str, "value_hex": hex} on stdin and prints what it observed as
JSON; a failure (the client's own retries exhausted) is reported, not raised."""
import asyncio
import json
import sys

from namebump import Client, Keypair


async def main():
    req = json.load(sys.stdin)
    value = bytes.fromhex(req["value_hex"])
    seen = {}
    try:
        client = await Client(("127.0.0.1", req["port"]), bytes.fromhex(req["server_pk"]))
        owner = Keypair.generate()
        r = await client.put(req["name"], value, owner)
        seen["put_op"] = r.op
        r = await client.get(req["name"])
        seen["get_value_hex"] = r.value.hex()
    except Exception as e:  # noqa: BLE001 - the test reports whatever ended it
        seen["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(seen, sys.stdout)


asyncio.run(main())
