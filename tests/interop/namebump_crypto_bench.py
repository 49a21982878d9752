"""Times the reference (namebump 0.0.16 / aionetiface 0.0.24 / python-ecdsa)
on the same PUT-with-1-KiB-value steps as core/benches/namebump.rs.
Prints JSON: {"op": median seconds per call}."""
import json
import statistics
import timeit

from ecdsa import SECP256k1, SigningKey, VerifyingKey
from aionetiface.vendor.ecies import decrypt, encrypt
from namebump.defs import DO_BUMP, OP_PUT
from namebump.keypair import Keypair
from namebump.packet import Packet

owner = Keypair.generate()
server = SigningKey.generate(curve=SECP256k1)
server_pk = server.get_verifying_key().to_string("compressed")
reply_pk = SigningKey.generate(curve=SECP256k1).get_verifying_key().to_string("compressed")
pkt = Packet(OP_PUT, b"bench-name", b"\x5a" * 1024, vkc=owner.vkc, updated=1795000000.5,
             behavior=DO_BUMP, pkid=0x12345678, reply_pk=reply_pk, ttl=10.0)
msg = pkt.get_msg_to_sign()
pkt.sig = owner.private.sign(msg)
plain = pkt.pack()
sealed = encrypt(server_pk, plain)
signed = Packet.unpack(plain)
assert signed.is_valid_sig() and decrypt(server, sealed) == plain

ops = {
    "pack": lambda: pkt.pack(),
    "unpack": lambda: Packet.unpack(plain),
    "sign": lambda: owner.private.sign(msg),
    # What the server does: key from vkc, then verify (Packet.is_valid_sig).
    "verify": lambda: signed.is_valid_sig(),
    "encrypt": lambda: encrypt(server_pk, plain),
    "decrypt": lambda: decrypt(server, sealed),
}
out = {}
for name, fn in ops.items():
    number, _ = timeit.Timer(fn).autorange()
    runs = timeit.Timer(fn).repeat(repeat=5, number=number)
    out[name] = statistics.median(runs) / number
print(json.dumps(out))
