from typing import Any, Optional, Union

class Packet:
    op: int
    pkid: int
    name: bytes
    name_len: int
    value: Optional[bytes]
    value_len: int
    updated: float
    ttl: float
    behavior: int
    vkc: Optional[bytes]
    sig: Optional[bytes]
    reply_pk: Optional[bytes]
    reply_sk: Any
    def __init__(
        self,
        op: int,
        name: Union[bytes, str],
        value: Union[bytes, str] = ...,
        vkc: Optional[bytes] = ...,
        sig: Optional[bytes] = ...,
        updated: Optional[float] = ...,
        behavior: int = ...,
        pkid: Optional[int] = ...,
        reply_pk: Optional[bytes] = ...,
        reply_sk: Any = ...,
        ttl: Optional[float] = ...,
    ) -> None: ...
    def gen_reply_key(self) -> None: ...
    def get_msg_to_sign(self) -> bytes: ...
    def is_valid_sig(self) -> bool: ...
    async def is_valid_sig_async(self) -> bool: ...
    def pack(self) -> bytes: ...
    @staticmethod
    def unpack(buf: bytes) -> "Packet": ...
