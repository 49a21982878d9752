"""The namebump wire packet (namebump 0.0.16 ``packet``): the same fields,
constructor and methods; packing, unpacking and signature checks run in
Keyway's Rust core."""

import asyncio
import random
import time

from ecdsa import SECP256k1, SigningKey

from keyway import _native

from ._text import to_b
from .defs import DEFAULT_REQUEST_TTL, DO_BUMP, NB_NAME_LEN, NB_VAL_LEN


class Packet:
    """A namebump request or reply.

    Wire layout: op (1), pkid (u32 LE), reply_pk (33, zeros = none),
    behavior (1), updated (f64 LE), ttl (f64 LE), name_len (u16 LE),
    value_len (u16 LE), name (≤ 50), value (≤ 1024), vkc (33, optional),
    sig (the rest). ``pack`` cuts over-long names and values, as the
    reference does; the Client refuses them instead.
    """

    def __init__(
        self,
        op,
        name,
        value=b"",
        vkc=None,
        sig=None,
        updated=None,
        behavior=DO_BUMP,
        pkid=None,
        reply_pk=None,
        reply_sk=None,
        ttl=None,
    ):
        self.updated = updated if updated is not None else time.time()
        self.ttl = ttl if ttl is not None else float(DEFAULT_REQUEST_TTL)
        self.op = op
        self.name = to_b(name)
        self.name_len = min(len(self.name), NB_NAME_LEN)
        self.value = to_b(value)
        self.value_len = min(len(self.value), NB_VAL_LEN)
        self.vkc = vkc
        self.sig = sig
        self.behavior = behavior
        self.pkid = pkid or random.randrange(0, 2**32)
        self.reply_pk = reply_pk
        self.reply_sk = reply_sk
        if vkc is not None and len(vkc) != 33:
            raise ValueError(
                "vkc must be 33 bytes (compressed public key), got {}".format(len(vkc))
            )

    def __repr__(self):
        return "Packet(op={0!r}, name={1!r}, value={2!r}, updated={3!r})".format(
            self.op, self.name, self.value, self.updated
        )

    def gen_reply_key(self):
        """Attach a fresh ephemeral reply key pair."""
        self.reply_sk = SigningKey.generate(curve=SECP256k1)
        self.reply_pk = self.reply_sk.get_verifying_key().to_string("compressed")

    def get_msg_to_sign(self):
        """The bytes the signature covers: the packet without its signature."""
        return self._pack(sig=None)

    def is_valid_sig(self):
        """True if ``sig`` is a valid signature of this packet by ``vkc``.

        False for a bad or malformed signature; raises ValueError when vkc
        is not a public key.
        """
        return _native.ecdsa_sha1_verify(bytes(self.vkc), bytes(self.sig or b""), self.get_msg_to_sign())

    async def is_valid_sig_async(self):
        """``is_valid_sig`` off the event loop's thread."""
        return await asyncio.get_running_loop().run_in_executor(None, self.is_valid_sig)

    def _pack(self, sig):
        return _native.packet_pack(
            int(self.op),
            int(self.pkid) & 0xFFFFFFFF,
            None if self.reply_pk is None else bytes(self.reply_pk),
            int(self.behavior),
            float(self.updated),
            float(self.ttl),
            to_b(self.name),
            to_b(self.value),
            None if self.vkc is None else bytes(self.vkc),
            None if sig is None else bytes(sig),
        )

    def pack(self):
        """The packet's wire bytes."""
        return self._pack(self.sig)

    @staticmethod
    def unpack(buf):
        """Parse wire bytes (lenient, as the reference: lengths clamped)."""
        op, pkid, reply_pk, behavior, updated, ttl, name, value, vkc, sig = _native.packet_unpack(
            bytes(buf)
        )
        return Packet(op, name, value, vkc, sig, updated, behavior, pkid, reply_pk, ttl=ttl)
