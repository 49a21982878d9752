"""drayer: signed, mutable single-writer record streams (Drayer, 2019).

Drop-in for the original ``drayer`` module's ``DrayerStream`` dict API,
``sync(url)``, ``getAttr("PublicKey")``, ``startServer()`` and
``startLocalDiscovery()``, on Keyway's Rust streams (the same SQLite file
format and HTTP sync protocol, so files and peers interoperate)."""

from .stream import DrayerStream, startLocalDiscovery, startServer

__all__ = ["DrayerStream", "startServer", "startLocalDiscovery"]
