"""Router and SmartPipe (sidewire 0.1.9 API)."""

import asyncio
import inspect
import socket
import time

from keyway import _native


def _secret(kp):
    """The 32-byte secret of an aionetiface ``Signing``, a
    ``namebump.Keypair``, an ``ecdsa.SigningKey`` or raw bytes."""
    if isinstance(kp, (bytes, bytearray)):
        return bytes(kp)
    for attr in ("private_key", "private"):
        key = getattr(kp, attr, None)
        if key is not None:
            return key.to_string()
    if hasattr(kp, "to_string"):
        return kp.to_string()
    raise ValueError("kp must be a keypair with a private key (Signing, namebump.Keypair, SigningKey or 32 bytes)")


def _brokers(servers):
    """(host, port) pairs from the reference's ``servers`` shape
    ``{af: {host: {"af", "host", "port"}}}`` (or a list of such dicts)."""
    if not servers:
        return []
    entries = []
    if isinstance(servers, dict):
        for family in servers.values():
            entries.extend(family.values() if isinstance(family, dict) else family)
    else:
        entries = list(servers)
    return [(str(e["host"]), int(e.get("port", 1883))) for e in entries]


class Router:
    """A sidewire node: ``Router(kp, msg_handler=None, get_time=..., nic=None,
    servers=None)``. ``get_time`` is required (a callable returning Unix
    seconds), as in the reference. ``servers`` None uses the bundled public
    pool. ``nic`` is accepted and unused. Use ``async with`` or
    ``start()``/``close()``."""

    def __init__(self, kp, msg_handler=None, get_time=None, nic=None, servers=None):
        if get_time is None:
            raise ValueError("Router needs get_time (e.g. time.time): clock skew is a real failure mode")
        self.kp = kp
        self.get_time = get_time
        self.nic = nic
        self.servers = servers
        self.msg_handlers = []
        if msg_handler is not None:
            self.msg_handlers.append(msg_handler)
        self.cache = {}
        self._native = None
        self._loop = None

    @property
    def public_key(self):
        """This node's 33-byte compressed public key (Keyway addition)."""
        return self._router().public_key()

    def _router(self):
        if self._native is None:
            raise RuntimeError("start the Router first (await router.start() or async with)")
        return self._native

    def add_msg_handler(self, handler):
        """Add a handler; adding the same one twice is a no-op."""
        if handler not in self.msg_handlers:
            self.msg_handlers.append(handler)

    def _deliver(self, msg, src_pk, queue_id):
        for handler in list(self.msg_handlers):
            result = handler(msg, src_pk, queue_id.hex(), None)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result, loop=self._loop)

    async def start(self):
        """Join the pool: subscribe where peers will look for this key."""
        if self._native is None:
            self._loop = asyncio.get_running_loop()
            clock = None if self.get_time is time.time else self.get_time
            self._native = _native.sidewire_router(
                _secret(self.kp), _brokers(self.servers), self._loop, self._deliver, clock
            )
        await self._native.start()
        return []

    async def close(self):
        """Leave the pool; pipes stop working."""
        if self._native is not None:
            await self._native.close()

    async def pipe(self, dest_pub_hex, use_cache=False, expiry=3600, hint_brokers=None):
        """A SmartPipe to the 66-hex-digit public key ``dest_pub_hex``.
        ``hint_brokers``: ``[{"af", "host", "port"}]`` where the destination
        listens, tried first."""
        if not isinstance(dest_pub_hex, str) or len(dest_pub_hex) != 66:
            raise ValueError("dest_pub_hex must be 66 hex digits (a compressed public key)")
        dest = bytes.fromhex(dest_pub_hex)
        hints = _brokers(hint_brokers or [])
        native = self._router().pipe(dest, hints, bool(use_cache), float(expiry))
        return SmartPipe(self, dest_pub_hex, native, hint_brokers)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.close()


class SmartPipe:
    """Sends to one destination over the brokers it listens at."""

    def __init__(self, router, dest_pub_hex, native=None, hint_brokers=None):
        self.router = router
        self.dest_pub_hex = dest_pub_hex
        self.hint_brokers = hint_brokers
        self.clients = []
        self._native = native

    async def connect(self, msg_cb=None):
        if msg_cb is not None:
            self.router.add_msg_handler(msg_cb)
        return self

    async def send(self, msg, timeout=4):
        """Send ``msg`` (bytes, or str as UTF-8) and wait for the
        destination's acknowledgement. Returns the message's length once
        acknowledged, 0 if none came within ``timeout`` seconds."""
        data = msg.encode("utf-8") if isinstance(msg, str) else bytes(msg)
        try:
            await self._native.send(data, float(timeout))
        except (TimeoutError, ConnectionError):
            return 0
        return len(data)

    async def close(self):
        """Nothing to release: brokers belong to the Router."""

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()


# The reference's constants, for code that imports them.
IP4 = socket.AF_INET
IP6 = socket.AF_INET6
