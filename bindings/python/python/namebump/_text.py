"""The reference's str → bytes mapping, kept so that old and new clients
reach the same names; non-ASCII input warns (it is dropped, not encoded)."""

import warnings


def to_b(value):
    """bytes as given; str as ASCII with non-ASCII characters dropped."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        data = value.encode("ascii", "ignore")
        if len(data) != len(value):
            warnings.warn(
                "namebump drops non-ASCII characters from str names and values "
                "(as the reference does, so both reach the same record); pass "
                "bytes, e.g. s.encode('utf-8'), to keep them",
                UnicodeWarning,
                stacklevel=3,
            )
        return data
    if isinstance(value, int):
        return str(value).encode("ascii")
    raise TypeError("expected bytes or str, got {0}".format(type(value).__name__))
