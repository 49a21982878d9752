from typing import Any, Dict, Optional, Protocol, Tuple, Union

from .keypair import Keypair
from .packet import Packet

TCP: int
UDP: int
DEST: Tuple[str, int]
PK: bytes
DEFAULT_RETRIES: int
DEFAULT_RETRY_PAUSE: float
NAMEBUMP_PIPE_CONF: Dict[str, Any]

class _Clock(Protocol):
    def time(self) -> float: ...

class PutRejected(Exception): ...

class RequestRefused(PutRejected):
    reason: str
    def __init__(self, message: str, reason: str) -> None: ...

_Text = Union[bytes, str]

class Client:
    dest: Tuple[str, int]
    dest_pk: bytes
    proto: int
    reply_pk: bytes
    sys_clock: Any
    nic: Any
    af: Optional[int]
    afs: list
    addr: Optional[Tuple[str, int]]
    def __init__(
        self,
        dest: Tuple[str, int],
        dest_pk: bytes,
        sys_clock: Optional[_Clock] = ...,
        nic: Any = ...,
        proto: int = ...,
        *,
        timeout: Optional[float] = ...,
        attempts: Optional[int] = ...,
        retry_pause: Optional[float] = ...,
    ) -> None: ...
    async def start(self) -> "Client": ...
    def __await__(self) -> Any: ...
    async def get(self, name: _Text, kp: Optional[Keypair] = ...) -> Packet: ...
    async def put(
        self, name: _Text, value: _Text, kp: Keypair, behavior: int = ..., ttl: Optional[float] = ...
    ) -> Packet: ...
    async def delete(self, name: _Text, kp: Keypair, ttl: Optional[float] = ...) -> Packet: ...
    async def usage(self, kp: Keypair, ttl: Optional[float] = ...) -> Optional[Dict[str, int]]: ...
