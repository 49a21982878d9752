"""namebump: a registrationless, key-authenticated name → value registry.

Drop-in for the namebump 0.0.16 package, backed by Keyway's Rust code."""

from .client import Client, PutRejected, RequestRefused
from .defs import DO_BUMP, DONT_BUMP, THROW_BUMP
from .keypair import Keypair

__all__ = [
    "DO_BUMP",
    "DONT_BUMP",
    "THROW_BUMP",
    "Client",
    "Keypair",
    "PutRejected",
]
