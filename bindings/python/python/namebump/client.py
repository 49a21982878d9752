"""The namebump client (namebump 0.0.16 ``client``): same constructor,
methods, defaults and return values, on Keyway's Rust client.

Deliberate differences (see CHANGELOG.md):
- an error reply from the server (not the owner, expired request, server
  failure) raises ``RequestRefused``, a subclass of ``PutRejected``, from
  ``put`` and ``delete`` instead of returning the error packet;
- names over 50 bytes and values over 1024 raise ``ValueError`` instead
  of being cut (a cut name could never be read back);
- one signed packet per attempt is raced over UDP and TCP (the reference
  signed two, and the server stored the PUT twice).
"""

import socket
import time

from ecdsa import SECP256k1, SigningKey

from keyway import _native

from ._text import to_b
from .defs import (
    DO_BUMP,
    DONT_BUMP,
    NB_NAME_LEN,
    NB_VAL_LEN,
    OP_DEL,
    OP_GET,
    OP_PUT,
    THROW_BUMP,
)
from .keypair import Keypair  # noqa: F401  (re-exported, as in the reference)
from .packet import Packet

TCP = socket.SOCK_STREAM
UDP = socket.SOCK_DGRAM

# The public server, as in the reference. Tests and examples pass their own.
DEST = ("ovh1.p2pd.net", 5300)
PK = bytes.fromhex("03f20b5dcfa5d319635a34f18cb47b339c34f515515a5be733cd7a7f8494e97136")

DEFAULT_RETRIES = 3
DEFAULT_RETRY_PAUSE = 0.5
NAMEBUMP_PIPE_CONF = dict(con_timeout=6, recv_timeout=6)


class PutRejected(Exception):
    """The server answered but stored nothing (typically the per-address
    quota). Not a network failure; not retried."""


class RequestRefused(PutRejected):
    """The server refused a request with an error reply: ``reason`` is
    "not_owner", "clock_skew", "server_error" or "bad_reply". A subclass
    of PutRejected, so code written for the reference still catches it
    (Keyway addition: the reference returned the error packet)."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


def _checked(name, value=None):
    name = to_b(name)
    if len(name) > NB_NAME_LEN:
        raise ValueError(
            "namebump names are at most {0} bytes; got {1}".format(NB_NAME_LEN, len(name))
        )
    if value is None:
        return name
    value = to_b(value)
    if len(value) > NB_VAL_LEN:
        raise ValueError(
            "namebump values are at most {0} bytes; got {1}".format(NB_VAL_LEN, len(value))
        )
    return name, value


def _secret(kp):
    if kp is None or getattr(kp, "private", None) is None:
        raise ValueError("this call must be signed: pass a Keypair with a private key")
    return kp.private.to_string()


class Client:
    """Async client for one namebump server.

    ``await Client(dest, dest_pk)`` resolves ``dest`` = (host, port) and
    returns the client. ``dest_pk`` is the server's 33-byte compressed
    public key. ``sys_clock`` is anything with ``.time()`` (default: the
    ``time`` module). ``nic`` is accepted for compatibility and unused:
    the operating system picks the route. ``proto`` must be TCP or UDP and,
    as in the reference, changes nothing (every call races both).

    Keyway additions, keyword-only: ``timeout`` (seconds one attempt waits
    for a reply, default 2), ``attempts`` (default DEFAULT_RETRIES, 3) and
    ``retry_pause`` (seconds, default DEFAULT_RETRY_PAUSE). NaN, infinite
    or negative seconds raise ValueError, as do a ``ttl`` outside
    (0, 60] and a clock whose ``time()`` is not a finite, non-negative
    number. Cancelling a call stops its requests.
    """

    def __init__(self, dest, dest_pk, sys_clock=None, nic=None, proto=TCP, *,
                 timeout=None, attempts=None, retry_pause=None):
        if not isinstance(dest_pk, bytes) or len(dest_pk) != 33:
            raise ValueError("dest_pk must be a 33-byte compressed public key")
        if proto not in (TCP, UDP):
            raise ValueError("proto must be TCP or UDP, got {0!r}".format(proto))
        self.dest = dest
        self.dest_pk = dest_pk
        self.proto = proto
        self.reply_sk = SigningKey.generate(curve=SECP256k1)
        self.reply_pk = self.reply_sk.get_verifying_key().to_string("compressed")
        self.sys_clock = sys_clock
        self.nic = nic
        self.af = None
        self.afs = []
        self.addr = None
        self._native = None
        self._config = (timeout, attempts, retry_pause)

    async def start(self):
        """Resolve the server's address; returns self."""
        if not self.sys_clock:
            self.sys_clock = time
        host, port = self.dest
        clock = None if self.sys_clock is time else self.sys_clock
        timeout, attempts, retry_pause = self._config
        self._native = await _native.namebump_connect(
            str(host), int(port), self.dest_pk, clock, timeout, attempts, retry_pause
        )
        # The families the server resolved to (once, in the native client).
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        self.afs = [family[v] for v in self._native.ip_versions()]
        self.af = self.afs[0] if self.afs else None
        self.addr = (host, port)
        return self

    def __await__(self):
        return self.start().__await__()

    def _client(self):
        if self._native is None:
            raise RuntimeError("await the Client (or call start()) before using it")
        return self._native

    async def get(self, name, kp=None):
        """The name's current value: a Packet whose ``.value`` is None when
        the name does not exist. ``kp`` is accepted and unused (GETs are
        anonymous). ConnectionError when the server cannot be reached."""
        name = _checked(name)
        found = await self._client().get(name)
        if found is None:
            miss = Packet(OP_GET, name, b"", updated=0.0, reply_pk=self.dest_pk)
            miss.value = None  # as the reference's client reports a miss
            return miss
        value, owner, timestamp = found
        return Packet(OP_GET, name, value, vkc=owner, sig=b"", updated=timestamp, reply_pk=self.dest_pk)

    async def put(self, name, value, kp, behavior=DO_BUMP, ttl=None):
        """Claim or update ``name`` with ``value``, signed by ``kp``.

        Returns the server's reply Packet. Raises PutRejected when the
        server stored nothing because of the quota (DO_BUMP, DONT_BUMP),
        KeyError("putting this will bump.") for THROW_BUMP in that case,
        RequestRefused (a PutRejected) on an error reply, ValueError for
        over-long input, ConnectionError when the server cannot be reached.
        """
        name, value = _checked(name, value)
        wire_behavior = DONT_BUMP if behavior == THROW_BUMP else behavior
        try:
            pkid, updated, r_name, r_value, vkc = await self._client().put(
                name, value, _secret(kp), int(behavior), ttl
            )
        except _native.Refused as e:
            kind, message = e.args
            if kind == "would_bump":
                raise KeyError("putting this will bump.") from None
            if kind == "rejected_at_quota":
                raise PutRejected(
                    "namebump put rejected by server (likely ResourceLimit; "
                    "name='{0}' dest={1})".format(name, self.dest)
                ) from None
            raise RequestRefused(
                "namebump put refused: {0} (name='{1}' dest={2})".format(message, name, self.dest),
                kind,
            ) from None
        return Packet(
            OP_PUT, r_name, r_value, vkc=vkc, sig=b"", updated=updated,
            behavior=wire_behavior, pkid=pkid, reply_pk=self.dest_pk, ttl=ttl,
        )

    async def delete(self, name, kp, ttl=None):
        """Delete ``name``, owned by ``kp``; returns a Packet. Deleting a
        missing name succeeds. RequestRefused (a PutRejected) on an error
        reply, such as a name owned by another key."""
        name = _checked(name)
        t = self.sys_clock.time() if self.sys_clock else time.time()
        try:
            await self._client().delete(name, _secret(kp), ttl)
        except _native.Refused as e:
            kind, message = e.args
            raise RequestRefused(
                "namebump delete refused: {0} (name='{1}' dest={2})".format(message, name, self.dest),
                kind,
            ) from None
        return Packet(OP_DEL, name, b"", vkc=kp.vkc, sig=b"", updated=t, reply_pk=self.dest_pk, ttl=ttl)

    async def usage(self, kp, ttl=None):
        """This address's quota state, e.g. ``{"af": 2, "names_used": 3,
        "name_limit": 20}``; None when the server refuses to say."""
        try:
            af, used, limit = await self._client().usage(_secret(kp), ttl)
        except _native.Refused:
            return None
        return {"af": af, "names_used": used, "name_limit": limit}
