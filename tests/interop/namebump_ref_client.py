"""The namebump 0.0.16 reference Client, unmodified, against a server under
test on 127.0.0.1. Reads {"port": int, "server_pk": hex} on stdin, runs every
operation and prints what it observed as JSON (the Rust test asserts)."""
import asyncio
import json
import sys

from namebump import DO_BUMP, DONT_BUMP, THROW_BUMP, Client, Keypair, PutRejected


async def main():
    req = json.load(sys.stdin)
    client = await Client(("127.0.0.1", req["port"]), bytes.fromhex(req["server_pk"]))
    owner, other = Keypair.generate(), Keypair.generate()
    seen = {}

    r = await client.put("alice", b"hello world", owner)
    seen["put"] = [r.op, r.value.decode()]
    r = await client.get("alice")
    seen["get"] = [r.op, r.value.decode(), r.vkc.hex()]
    seen["usage"] = await client.usage(owner)
    r = await client.put("alice", b"new value", owner)
    seen["update"] = [r.op, r.value.decode()]
    r = await client.get("alice")
    seen["get_updated"] = r.value.decode()
    r = await client.put("alice", b"hijack", other)
    seen["non_owner_put_op"] = r.op
    r = await client.delete("alice", other)
    seen["non_owner_delete_op"] = r.op
    r = await client.get("alice")
    seen["after_non_owner"] = r.value.decode()
    r = await client.delete("alice", owner)
    seen["delete_op"] = r.op
    r = await client.get("alice")
    seen["get_deleted"] = [r.op, r.value, r.updated]
    seen["usage_after_delete"] = await client.usage(owner)
    r = await client.put("big", b"\x07" * 1024, owner)
    r = await client.get("big")
    seen["big_value_len"] = len(r.value)

    # Quota: this address holds "big"; fill it to 20, then the 21st.
    for i in range(19):
        await client.put("q%d" % i, b"v", owner, behavior=DONT_BUMP)
    seen["usage_full"] = await client.usage(owner)
    for name, behavior in (("dont", DONT_BUMP), ("bump", DO_BUMP)):
        try:
            await client.put("q-extra", b"v", owner, behavior=behavior)
            seen["at_quota_" + name] = "stored"
        except PutRejected:
            seen["at_quota_" + name] = "PutRejected"
    try:
        await client.put("q-extra", b"v", owner, behavior=THROW_BUMP)
        seen["at_quota_throw"] = "stored"
    except KeyError as e:
        seen["at_quota_throw"] = "KeyError: " + str(e)
    json.dump(seen, sys.stdout)


asyncio.run(main())
