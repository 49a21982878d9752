"""Keyway's Python wheel: the drop-in ``namebump``, ``sidewire`` and
``drayer`` packages, backed by Rust (``keyway._native``)."""

import atexit

from . import _native


def _complete(future, ok, value):
    """Finishes an awaitable from the native side (on the event loop)."""
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


# Before the interpreter finalizes, native threads stop calling into Python
# and the ones inside leave (see bindings/python/src/bridge.rs).
atexit.register(_native._shutdown)

__all__ = ["_native"]
