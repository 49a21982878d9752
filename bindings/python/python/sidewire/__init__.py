"""sidewire: signed messages to a public key over a pool of MQTT brokers.

Drop-in for the sidewire 0.1.9 package's ``Router`` and ``SmartPipe``,
backed by Keyway's Rust Router. Handlers receive the message as bytes with
the reference's signature ``(msg, src_pk, queue_id, client)``; ``client``
is None (Keyway's broker links are not Python objects)."""

from .router import Router, SmartPipe

__all__ = ["Router", "SmartPipe"]
