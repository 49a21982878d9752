# The namebump README example (seed 000), unchanged except for where
# DEST and PK come from: a local server named by the test.
import asyncio
import namebump
import os
DEST = (os.environ["NAMEBUMP_DEST_HOST"], int(os.environ["NAMEBUMP_DEST_PORT"]))
PK = bytes.fromhex(os.environ["NAMEBUMP_PK"])
async def main():
    # Generate (or load) your own keypair. This is the ONLY credential
    # for the name -- guard the private key; lose it and you've lost
    # ownership of every name signed with it.
    kp = namebump.Keypair.generate()
    # Connect. `await Client(...)` runs .start() implicitly.
    client = await namebump.Client(DEST, PK)
    # Pick a name. Deriving it from the keypair's public key makes it
    # unique per-keypair so this snippet doesn't collide with anyone
    # else running the same example -- in real code you'd choose a
    # human-readable name you care about owning.
    name = "demo_" + kp.vkc.hex()[:16]
    # Claim it and store a value. First successful PUT binds the name
    # to kp's public key; subsequent PUTs for the same name must be
    # signed by the same key.
    await client.put(name, b"hello world", kp)
    # Read it back. GET is unsigned -- any client can read any name.
    pkt = await client.get(name)
    print(pkt.value) # -> b"hello world"
    # Update it. Same call shape -- PUT is upsert when you own the name.
    await client.put(name, b"new value", kp)
    # Delete it. Requires the owning keypair.
    await client.delete(name, kp)
asyncio.run(main())
