"""Reference side of the namebump crypto cross-check (no sockets).

Reads one JSON request on stdin and writes one JSON answer on stdout, using
only the published namebump 0.0.16 / aionetiface 0.0.24 code paths the
reference client and server use:

  {"mode": "seal", "server_pk": hex, "owner_priv": hex, "reply_pk": hex,
   "cases": [{"name": hex, "value": hex, "pkid": int, "updated": float}]}
      -> [{"wire": hex}]   signed like Client.send_pkt, encrypted with ecies.encrypt

  {"mode": "open", "server_priv": hex, "cases": [{"wire": hex}]}
      -> [{"op", "pkid", "name", "value", "vkc", "valid_sig"}]
         decrypted with ecies.decrypt, parsed with Packet.unpack, checked
         with Packet.is_valid_sig, exactly as the server does
"""
import json
import sys

from ecdsa import SECP256k1, SigningKey
from aionetiface.utility.signing import ecdsa_sign_sync
from aionetiface.vendor.ecies import decrypt, encrypt
from namebump.defs import DO_BUMP, OP_PUT
from namebump.keypair import Keypair
from namebump.packet import Packet


def seal(req):
    owner = Keypair(SigningKey.from_string(bytes.fromhex(req["owner_priv"]), curve=SECP256k1))
    server_pk = bytes.fromhex(req["server_pk"])
    out = []
    for case in req["cases"]:
        pkt = Packet(OP_PUT, bytes.fromhex(case["name"]), bytes.fromhex(case["value"]),
                     vkc=owner.vkc, updated=case["updated"], behavior=DO_BUMP,
                     pkid=case["pkid"], reply_pk=bytes.fromhex(req["reply_pk"]), ttl=10.0)
        msg = pkt.get_msg_to_sign()
        sig = ecdsa_sign_sync(owner.private, msg)
        out.append({"wire": encrypt(server_pk, msg + sig).hex()})
    return out


def open_(req):
    server = SigningKey.from_string(bytes.fromhex(req["server_priv"]), curve=SECP256k1)
    out = []
    for case in req["cases"]:
        pkt = Packet.unpack(decrypt(server, bytes.fromhex(case["wire"])))
        out.append({"op": pkt.op, "pkid": pkt.pkid, "name": pkt.name.hex(),
                    "value": pkt.value.hex(), "vkc": pkt.vkc.hex(),
                    "valid_sig": bool(pkt.is_valid_sig())})
    return out


def main():
    req = json.load(sys.stdin)
    answer = {"seal": seal, "open": open_}[req["mode"]](req)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
