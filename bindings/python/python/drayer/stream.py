"""DrayerStream and the module-level server functions."""

import asyncio
import base64
import threading

import msgpack

from keyway import _native

# Streams opened without noServe=True: what startServer() serves.
_allStreams = {}
_server = {"address": None, "lan": False}
_lock = threading.Lock()

DEFAULT_HTTP_PORT = 33125


def _run(awaitable_factory):
    """Runs a native awaitable to completion from synchronous code, on a
    thread of its own (so it works whether or not the caller's thread has
    a running event loop)."""
    result = {}

    def main():
        async def go():
            return await awaitable_factory()

        try:
            result["value"] = asyncio.run(go())
        except BaseException as e:  # handed to the caller below
            result["error"] = e

    thread = threading.Thread(target=main, name="drayer-sync")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


class DrayerStream:
    """A stream file. ``DrayerStream(fn)`` opens it, or creates it with a new
    key (and ``fn + ".privatekey"``, mode 0600) if it does not exist;
    ``DrayerStream(fn, pubkey=b64)`` makes or opens a mirror of that
    stream. ``stream[key] = value`` stores any msgpack-able value (type
    ``obj``), as the original's dict API does."""

    def __init__(self, fn=None, pubkey=None, noServe=False):
        if fn is None:
            raise ValueError("Keyway's DrayerStream needs a file name")
        if isinstance(pubkey, (bytes, bytearray)):
            pubkey = base64.b64encode(bytes(pubkey)).decode("ascii")
        self.fn = fn
        self.noServe = noServe
        self._native = _native.drayer_open(str(fn), pubkey.strip() if pubkey else None)
        self.pubkey = base64.b64decode(self._native.public_key())
        if not noServe:
            with _lock:
                _allStreams[self.pubkey] = self

    # The original's attribute table, as far as users read it.
    def getAttr(self, k):
        """``getAttr("PublicKey")``: the public key, base64."""
        if k == "PublicKey":
            return self._native.public_key()
        return None

    @property
    def privkey(self):
        """Whether this copy can write (the original held the key bytes)."""
        return self._native.is_owner() or None

    def __setitem__(self, k, v):
        self.rawSetItem(k, msgpack.packb(v, use_bin_type=True), "obj")

    def __getitem__(self, k):
        return msgpack.unpackb(self.rawGetItemByKey(k, "obj"), raw=False)

    def __delitem__(self, k):
        self.rawDelete(k, "obj")

    def __contains__(self, k):
        return self.keyExists(k, "obj")

    def keys(self, type="obj"):
        """Keys of the records of ``type``, oldest first."""
        return [key for key, _ in self._native.keys(type)]

    def rawSetItem(self, k, v, type, t=None):
        """Stores bytes ``v`` under (k, type), signed."""
        self._native.set(str(k), str(type), bytes(v))

    def rawGetItemByKey(self, k, t):
        """The bytes under (k, t); KeyError when absent."""
        value = self._native.get(str(k), str(t))
        if value is None:
            raise KeyError(k)
        return value

    def rawDelete(self, k, t):
        """Deletes (k, t); KeyError when absent."""
        if not self._native.delete(str(k), str(t)):
            raise KeyError(k)

    def keyExists(self, k, t):
        return self._native.get(str(k), str(t)) is not None

    def sync(self, url=None):
        """Pulls everything newer from the Drayer server at ``url`` (Keyway's
        or the original's); returns the number of records inserted. Blocks,
        as the original does; ``await stream.sync_async(url)`` in async code."""
        if not url:
            return 0
        return _run(lambda: self._native.sync(url))

    async def sync_async(self, url):
        """``sync`` for asyncio code (Keyway addition)."""
        return await self._native.sync(url)


def startServer(port=None, host="::"):
    """Serves every stream opened without ``noServe`` over the Drayer HTTP
    sync API (as the original, on every interface by default, port 33125;
    ``port=0`` picks a free one); returns the port. Streams opened later are not added (restart to add
    them)."""
    with _lock:
        if _server["address"] is None:
            paths = [s.fn for s in _allStreams.values()]
            port = DEFAULT_HTTP_PORT if port is None else int(port)
            listen = "[{0}]:{1}".format(host, port) if ":" in host else "{0}:{1}".format(host, port)
            _server["address"] = _run(lambda: _native.drayer_serve(paths, listen))
            _server["paths"] = paths
        return int(_server["address"].rsplit(":", 1)[1])


def startLocalDiscovery():
    """Joins DrayerUDP LAN discovery (224.7.130.8:15723) for the served
    streams: announces them and pulls from peers that announce newer
    records. Call after ``startServer``."""
    with _lock:
        if _server["address"] is None:
            raise RuntimeError("call startServer() first: discovery announces its HTTP port")
        if not _server["lan"]:
            port = int(_server["address"].rsplit(":", 1)[1])
            _run(lambda: _native.drayer_discover(_server["paths"], port))
            _server["lan"] = True
